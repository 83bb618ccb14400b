//! Device models of dmavm: buses and dispatch, legacy devices, the IOAPIC,
//! the PCI host bridge and MSI-X, the virtio transports and devices.
//!
//! Nothing here knows about ACPI, device trees or a particular IOMMU: the
//! machine model in the `dmavm` crate decides where devices sit and what the
//! firmware says about them.

pub mod bus;
pub mod hotplug_events;
pub mod interrupt;
pub mod ioapic;
pub mod legacy;
pub mod log_limit;
pub mod pci;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod virtio;

/// For [`guest_log!`]: the `log` crate as the macro's callers' crate sees it.
#[doc(hidden)]
pub use log as __log;

pub use bus::{Bus, BusDevice, BusError, SharedDevice};
pub use interrupt::{InterruptError, InterruptLine, MsiMessage, MsiSink};
pub use ioapic::{Ioapic, IoapicPin, IoapicRoute, IoapicSink};
