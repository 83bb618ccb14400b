//! ACPI firmware tables for an x86 guest of dmavm.
//!
//! The VMM describes its machine as plain data ([`Platform`]); [`build`] turns that description
//! into the tables a stock Linux needs to boot (RSDP, XSDT, FADT, MADT, DSDT, MCFG when the
//! machine has PCI Express host bridges, see [`PciRoot`], VIOT when it has a virtio-iommu, see
//! [`Viot`], and DMAR when it has Intel VT-d units, see [`Dmar`]), each already placed at a guest-physical address inside a region the VMM
//! reserves for firmware. The VMM only copies the [`Blob`]s into guest memory and tells the guest
//! where the RSDP is.
//!
//! The machine is HW-reduced ACPI (ACPI 6.5 section 4.1): no PM1/GPE blocks, no SCI, no FACS, no
//! 8259 PIC, no PIT, no CMOS RTC, no i8042. Power-off goes through the FADT sleep registers and
//! reboot through the FADT reset register; [`sleep`] states the contract the VMM's devices must
//! implement.
//!
//! Table encodings come from the `acpi_tables` crate where it has them (RSDP, XSDT, FADT, AML,
//! generic SDT header, MCFG, address space descriptors); this crate adds what it lacks (MADT
//! revision 6 with interrupt source overrides and local APIC NMI structures, the IRQNoFlags
//! resource descriptor, the VIOT, the DMAR) and decides the content and the placement. It never touches
//! KVM or guest memory.

mod assemble;
mod blob;
mod description;
mod device_node;
mod dmar;
mod dsdt;
mod dump;
mod error;
mod fadt;
pub mod hotplug;
mod identity;
mod layout;
mod madt;
mod mcfg;
mod name_seg;
mod pci;
mod raw_aml;
mod resource;
mod rsdp;
pub mod sleep;
#[cfg(test)]
mod test_utils;
mod viot;
mod xsdt;

pub use assemble::build;
pub use blob::{AcpiTables, Blob, RSDP_SIGNATURE};
pub use description::{
    Dmar, DmarScope, DmarUnit, HotplugController, InterruptOverride, IoApic, PciRoot, Platform, Polarity,
    ResetRegister, SerialPort, SleepRegisters, TriggerMode, Viot, ViotIommu, ViotMmioEndpoint, ViotPciRange,
    VirtioMmioDevice,
};
pub use error::Error;
pub use madt::LOCAL_APIC_ADDRESS;
