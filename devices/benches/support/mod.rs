//! What the virtio-blk benchmarks share: the backing file, the driver side
//! of the queue, the measuring loop and the report's header. Also compiled
//! into `dmavm-iommu`'s translated benchmark (by `#[path]`), which runs the
//! very same requests through the IOMMU, so both figures come from one
//! piece of code.

// Each including benchmark uses its own subset.
#![allow(dead_code)]

pub mod backing;
pub mod driver;
pub mod report;

use std::error::Error;

/// What the benchmarks' `main` returns.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;
