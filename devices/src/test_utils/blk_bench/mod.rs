//! What the virtio-blk benchmarks share: the backing file, the driver side
//! of the queue, the measuring loop and the report's header. Both this
//! crate's `blk_throughput` and `dmavm-iommu`'s `translated_blk`, which
//! runs the very same requests through the IOMMU, use it, so both figures
//! come from one piece of code.

pub mod backing;
pub mod driver;
pub mod report;
pub mod timing;

use std::error::Error;

/// What the benchmarks' `main` returns.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;
