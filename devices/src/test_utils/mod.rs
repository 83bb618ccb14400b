//! Test doubles and drivers for the device models, for this crate's unit
//! tests and benchmarks and for other crates' tests (enable the
//! `test-utils` feature, e.g. in `[dev-dependencies]`):
//!
//! - [`guest_memory`]: canary-filled guest memory, a snapshot to check
//!   which bytes changed, a write-protected view;
//! - [`split_queue`]: the driver's side of a split virtqueue;
//! - [`interrupts`]: an interrupt sink that records what it got;
//! - [`net_backend`]: an in-memory virtio-net backend;
//! - [`recording_device`]: a virtio device that records what its
//!   transport does to it;
//! - [`xorshift`]: deterministic garbage for fuzz-style tests;
//! - [`blk_bench`]: the virtio-blk benchmark driver, shared by this crate's
//!   `blk_throughput` and `dmavm-iommu`'s `translated_blk`.
//!
//! Nothing here is built into dmavm itself.

// A test double that cannot set itself up has found a failed test: it
// panics, like the assertions it stands beside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod blk_bench;
pub mod guest_memory;
pub mod interrupts;
pub mod log_capture;
pub mod net_backend;
pub mod recording_device;
pub mod split_queue;
pub mod xorshift;
