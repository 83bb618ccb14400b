//! An emulated Intel VT-d DMA remapping unit (Intel Virtualization
//! Technology for Directed I/O, Architecture Specification, 4.x: chapters
//! 3, 6, 9, 10 and 11) and the `vm_memory::Iommu` its device models
//! translate through.
//!
//! # Using it (the VMM)
//!
//! 1. [`VtdUnit::new`] with a [`VtdConfig`], guest memory and a
//!    [`FaultInterrupt`] that sends MSIs.
//! 2. Map its [`REGISTER_SPACE`] bytes of registers at the base address
//!    the DMAR table gives it, forwarding accesses to [`VtdUnit::read`] and
//!    [`VtdUnit::write`].
//! 3. For each device in its scope: [`translated_memory`]`(guest_memory,
//!    unit.endpoint(source_id))` is the memory to give it, on which every
//!    address is an IOVA.
//! 4. [`VtdUnit::stats`] for `--stats`.
//!
//! # What it implements
//!
//! - Registers: VER 1.0; CAP with 48-bit MGAW, SAGAW 4-level only, 2 MiB
//!   and 1 GiB second-level pages, 16-bit domain IDs, page-selective
//!   invalidation (MAMV 18), 8 fault recording registers, no caching mode,
//!   no write-buffer flushing; ECAP with queued invalidation, pass-through,
//!   and page-walk coherency and snoop control as configured
//!   ([`VtdConfig::coherent`]); no device-TLB, interrupt remapping or
//!   scalable mode. See [`unit`] for the register semantics.
//! - Translation: legacy-mode root and context tables, translation types
//!   00b (second-level tables) and 10b (pass-through), 4-level
//!   second-level tables with read/write permissions and large pages, the
//!   fault reasons of [`FaultReason`]. With translation disabled
//!   (GSTS.TES = 0) DMA passes untranslated, as on hardware, and is counted.
//! - Caches: a context cache and an IOTLB per source ID (see [`endpoint`]),
//!   invalidated by CCMD / IOTLB registers and by the invalidation queue.
//! - Faults: primary fault logging with overflow, the fault event MSI, the
//!   invalidation completion MSI.

mod config;
pub mod endpoint;
mod fault_log;
mod interrupt;
mod invalidation;
mod registers;
mod stats;
mod sync;
mod tables;
pub mod unit;

#[cfg(test)]
mod tests;

pub use config::VtdConfig;
pub use endpoint::VtdEndpoint;
pub use interrupt::FaultInterrupt;
pub use registers::{ADDRESS_WIDTH, FAULT_RECORD_COUNT, REGISTER_SPACE};
pub use stats::VtdStats;
pub use tables::FaultReason;
pub use unit::VtdUnit;

/// Guest memory as a device behind a VT-d unit sees it: every address is
/// an IOVA translated by its [`VtdEndpoint`]; build it with
/// [`translated_memory`].
pub type VtdMemory<B = vm_memory::GuestMemoryMmap> = dmavm_translation::TranslatedMemory<VtdEndpoint, B>;

pub use dmavm_translation::translated_memory;
