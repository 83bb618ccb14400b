//! What every emulated IOMMU of dmavm (the virtio-iommu, Intel VT-d)
//! gives the device models in its scope, whatever its own tables and
//! requests look like: guest memory seen through one endpoint's
//! translations ([`TranslatedMemory`]), the endpoint's shared IOTLB with
//! a bounded size ([`bounded_iotlb`]), and each thread's hot pages in
//! front of it ([`hot_pages`]), kept consistent by the log of removals
//! from its translations ([`InvalidationLog`]).
//!
//! # Using it (an IOMMU model)
//!
//! 1. Each endpoint owns an `Arc<`[`HotPageSource`]`>` and records in it
//!    every removal from its translations (an unmap, an invalidation, a
//!    change of domain or context) before the guest's request that made it
//!    completes.
//! 2. Its `vm_memory::Iommu` implements [`TranslatingEndpoint`]; when it
//!    serves a small access from its IOTLB it offers the page to
//!    [`hot_pages::insert`], with the log number it read before looking.
//! 3. The device model gets [`translated_memory`]`(guest_memory, endpoint)`.

pub mod bounded_iotlb;
mod hot_page_source;
pub mod hot_pages;
mod invalidation_log;
mod thread_count;
mod translated_memory;

pub use hot_page_source::HotPageSource;
pub use invalidation_log::InvalidationLog;
pub use translated_memory::{translated_memory, TranslatedMemory, TranslatingEndpoint};
