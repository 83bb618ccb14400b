//! Device-level tests: hand-built request chains in guest memory, and
//! device models running on translated memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod blk;
mod hot_pages;
mod limits;
mod requests;
mod translation;
