//! dmavm's machine model: which devices a VM has, where they sit, how each
//! reaches guest memory and what the firmware declares about it.
//!
//! The one place every DMA question is decided. Options (from the command
//! line or a [`config_file`]) go in; [`Machine::new`] places the host
//! bridges and devices by window index and PCI slot, resolves what each
//! device left to its bridge and gives every device one [`DmaPath`]; the
//! [`checks`] report each broken rule of the DMA contract with a stable
//! code. From the placed machine come, for either architecture and on any
//! host, the ACPI description ([`acpi`], [`scope`], [`vtd`]) handed to the
//! `dmavm-acpi` encoder, the device-tree description ([`dt`]) handed to
//! `dmavm-fdt`, and [`describe`]'s rows. The VM runner reads the same
//! machine to wire its devices, so firmware and devices cannot disagree.
//!
//! No KVM, no command-line parser, no dependence on the build's
//! architecture: the address maps of both architectures are values
//! ([`layout`]).

pub mod acpi;
pub mod arch;
mod bridge;
pub mod checks;
pub mod config_file;
pub mod describe;
pub mod device_types;
pub mod dma;
pub mod dt;
pub mod endpoint_id;
pub mod error;
pub mod hotplug;
pub mod input_file;
pub mod layout;
pub mod mac;
pub mod options;
mod placement;
mod pools;
pub mod scope;
pub mod size;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod user_text;
pub mod vtd;

pub use arch::Arch;
pub use bridge::PciBridge;
pub use device_types::{DeviceKind, DEVICE_TYPES};
pub use dma::{DmaPath, DmaPool, PoolOwner};
pub use endpoint_id::{mmio_endpoint, pci_bdf, pci_endpoint};
pub use error::{MachineError, Result};
pub use placement::{Device, Machine, Placement};
pub use vtd::{Vtd, VtdScope, VtdUnit};
