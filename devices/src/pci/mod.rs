//! PCI: root buses behind host bridges, one per PCI segment, reached
//! through ECAM (PCIe 6.0, 7.2.2; one window per segment) and, for
//! segment 0, the legacy 0xCF8/0xCFC mechanism (PCI Local Bus 3.0,
//! 3.2.2.3.2), the type 0 configuration header with BARs and a capability
//! list (PCI 3.0, 6.1-6.7), and MSI-X (PCI 3.0, 6.8.2).
//!
//! The pieces and who owns what:
//!
//! - A [`PciDevice`] owns its configuration space (usually through a
//!   [`PciConfigSpace`]) and its BAR registers' contents; it answers
//!   configuration and BAR accesses and describes its BARs ([`PciBar`]).
//! - A [`PciRoot`] owns bus 0 of its segment: up to 32 devices (function 0
//!   each), the host bridge at 00:00.0, the BAR windows it allocates from
//!   and the placement of every decoding BAR on the MMIO
//!   [`Bus`](crate::Bus). Several roots share one MMIO bus, each with
//!   windows of its own. After
//!   each configuration write it re-reads the device's command register and
//!   BARs, moves the bus mapping when they changed and tells a
//!   [`BarListener`] (the VMM, which moves its ioeventfds).
//! - [`PciEcam`] and [`PciConfigIo`] are the two guest-facing front ends:
//!   an ECAM window per root, and the port mechanism in front of segment
//!   0's.
//! - [`MsixVectors`] owns an MSI-X table and PBA and hands unmasked vectors
//!   to an [`MsixBackend`].

mod access;
mod config;
mod msix;
mod root;
#[cfg(test)]
mod tests;

pub use access::{PciConfigIo, PciEcam, ECAM_BUS_SIZE, PCI_CONFIG_IO_LEN, PCI_CONFIG_IO_PORT};
pub(crate) use config::overlaps;
pub use config::{
    BarKind, PciBar, PciConfigSpace, PciIds, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY,
    PCI_BAR0, PCI_CAPABILITY_LIST, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_CLASS_REVISION, PCI_COMMAND,
    PCI_CONFIG_SIZE, PCI_DEVICE_ID, PCI_EXT_CONFIG_SIZE, PCI_HEADER_TYPE, PCI_INTERRUPT_PIN, PCI_STATUS,
    PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID, STATUS_CAP_LIST,
};
pub use msix::{
    MsixBackend, MsixVectors, SignalMsi, MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK, MSIX_ENTRY_SIZE,
    MSIX_MAX_VECTORS,
};
pub use root::{
    BarListener, HostBridge, PciRoot, PciWindows, HOST_BRIDGE_CLASS, HOST_BRIDGE_DEVICE_ID,
    HOST_BRIDGE_VENDOR_ID, PCI_SLOTS,
};

use std::sync::{Arc, Mutex};

/// A PCI function as the root sees it.
///
/// Accesses come straight from the guest: an implementation must accept
/// any offset and any length without panicking (the root only forwards
/// naturally aligned configuration accesses of 1, 2 or 4 bytes below
/// [`PCI_EXT_CONFIG_SIZE`], and BAR accesses that lie inside the BAR, but a
/// device must not rely on it).
pub trait PciDevice: Send {
    /// A configuration read at byte `offset` (0..4096): fill `data`.
    fn read_config(&mut self, offset: u16, data: &mut [u8]);

    /// A configuration write at byte `offset` (0..4096).
    fn write_config(&mut self, offset: u16, data: &[u8]);

    /// The BARs the device implements (static: what they hold is read back
    /// from the configuration space).
    fn bars(&self) -> Vec<PciBar>;

    /// A guest read at `offset` into BAR `index`.
    fn read_bar(&mut self, index: u8, offset: u64, data: &mut [u8]);

    /// A guest write at `offset` into BAR `index`.
    fn write_bar(&mut self, index: u8, offset: u64, data: &[u8]);
}

/// A PCI device shared between the root (configuration and BAR accesses
/// from vCPUs) and its owner (the event loop processing its queues).
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// What can go wrong building the PCI topology (guest accesses never fail:
/// they read all-ones or are dropped).
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// A BAR description is impossible: index out of range (or the upper
    /// half of a 64-bit BAR would be), size not a power of two, below 16
    /// bytes or too large for its kind.
    #[error("invalid BAR {index} of size {size:#x}")]
    InvalidBar {
        /// BAR index.
        index: u8,
        /// Requested size.
        size: u64,
    },
    /// Two BARs claim the same register.
    #[error("BAR register {0} is already in use")]
    BarInUse(u8),
    /// The capability does not fit in the 256-byte configuration space.
    #[error("no room for a capability of {0} bytes in configuration space")]
    NoCapabilitySpace(usize),
    /// An MSI-X table must have 1 to 2048 vectors.
    #[error("invalid MSI-X vector count {0}")]
    InvalidVectorCount(usize),
    /// That device number is the host bridge's, out of range or taken.
    #[error("device number {0} is not available")]
    SlotUnavailable(u8),
    /// All 32 device numbers of the root bus are taken.
    #[error("no free device number on the root bus")]
    NoFreeSlot,
    /// A BAR window is empty, wraps around or (for the 32-bit window) lies
    /// above 4 GiB.
    #[error("invalid BAR window {start:#x}..{end:#x}")]
    InvalidWindow {
        /// Start of the window.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
    /// The BAR windows have no room left for a BAR.
    #[error("no room for BAR {index} ({size:#x} bytes) of device {slot:02x}.0")]
    NoBarSpace {
        /// Device number.
        slot: u8,
        /// BAR index.
        index: u8,
        /// BAR size.
        size: u64,
    },
    /// A BAR could not be placed on the MMIO bus (it overlaps something
    /// the VMM placed there: the windows are misconfigured).
    #[error("BAR {index} of device {slot:02x}.0 at {addr:#x} cannot be placed on the MMIO bus")]
    BarPlacement {
        /// Device number.
        slot: u8,
        /// BAR index.
        index: u8,
        /// Where it should have gone.
        addr: u64,
    },
    /// A device's lock was poisoned by a panic on another thread.
    #[error("PCI device unusable after a panic on another thread")]
    Poisoned,
}
