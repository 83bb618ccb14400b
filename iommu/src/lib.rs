//! The virtio-iommu device model of dmavm (virtio 1.2, 5.13) and the
//! `vm_memory::Iommu` its endpoints' device models translate through.
//!
//! # Using it (the VMM)
//!
//! 1. [`VirtioIommu::new`] with an [`IommuConfig`], the endpoint IDs in the
//!    IOMMU's scope (PCI requester IDs; IDs of the VMM's choosing for
//!    virtio-mmio devices, the same ones the VIOT or device tree names) and
//!    extra reserved IOVA regions.
//! 2. [`VirtioIommu::handle`] gives an [`IommuHandle`] that outlives the
//!    device's move into its transport.
//! 3. For each translated device: [`translated_memory`]`(guest_memory,
//!    handle.endpoint(id)?)` is the memory to give it: a
//!    [`TranslatedMemory`] (a `vm_memory::GuestMemory` over
//!    `GuestMemoryMmap`), on which every address is an IOVA.
//! 4. [`IommuHandle::stats`] for `--stats`.
//!
//! # Spec decisions
//!
//! - Features: `VERSION_1`, `RING_INDIRECT_DESC`, `RING_EVENT_IDX`,
//!   `INPUT_RANGE`, `DOMAIN_RANGE`, `MAP_UNMAP`, `PROBE`, `MMIO`,
//!   `BYPASS_CONFIG` (not the superseded `BYPASS`, 5.13.3.2). Two queues of
//!   256.
//! - Configuration: 4 KiB granule; 48-bit input range by default (see
//!   [`IommuConfig::input_range`]); domain IDs 0..=`u32::MAX`; `probe_size`
//!   512; `bypass` starts at 0 ([`IommuConfig::boot_bypass`]), is writable
//!   with 0 or 1, and survives device reset.
//! - Requests: statuses per the table in [`device`]. Unknown request types
//!   get used length 0 and no write, as 5.13.6.1 says (Linux reads that as
//!   an I/O error); `S_UNSUPP` is for known requests the negotiated
//!   features do not allow.
//! - ATTACH moves an endpoint from its old domain, which is freed with its
//!   mappings when it becomes empty; so is a domain whose last endpoint is
//!   detached. Domains therefore never outnumber endpoints; mappings are
//!   capped by [`IommuConfig::max_mappings`] (`S_NOMEM`), and the
//!   endpoints' IOTLBs together by [`IommuConfig::iotlb_entries`] (they are
//!   caches: what does not fit is evicted and refilled on a miss).
//! - PROBE answers one RESV_MEM property per reserved region in address
//!   order (the MSI window as subtype MSI, the VMM's regions as subtype
//!   RESERVED), then zeros (the `NONE` terminator). MAP over a reserved
//!   region fails with `S_RANGE`.
//! - Faults: one report per failed translation, `FAULT_F_ADDRESS` always
//!   set, `READ`/`WRITE` from the access; see [`fault`] for queueing.

pub mod config;
pub mod device;
mod domain;
mod endpoint;
pub mod endpoint_iommu;
pub mod error;
pub mod fault;
mod handle;
mod iommu_state;
pub mod request;
pub mod stats;
mod sync;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
#[cfg(test)]
mod tests;

pub use config::{IommuConfig, MixedCoherency, X86_MSI_REGION};
pub use device::{VirtioIommu, IOMMU_QUEUE_SIZE, VIRTIO_ID_IOMMU};
pub use dmavm_translation::translated_memory;
pub use endpoint_iommu::{EndpointIommu, IotlbSnapshot};
pub use error::IommuError;
pub use handle::IommuHandle;
pub use stats::EndpointStats;

/// Guest memory as a device behind the virtio-iommu sees it: every address
/// is an IOVA translated by its [`EndpointIommu`].
pub type TranslatedMemory<B = vm_memory::GuestMemoryMmap> =
    dmavm_translation::TranslatedMemory<EndpointIommu, B>;
