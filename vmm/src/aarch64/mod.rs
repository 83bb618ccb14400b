//! The arm64 back end: what a KVM VM on an arm64 host needs beyond the
//! shared machine model, devices and vCPU loop.
//!
//! - [`layout`]: the guest address map (the fdt crate's), under the x86_64
//!   map's names, so the machine model places devices at arm64 addresses;
//! - [`interrupts`]: SPI and ITS (MSI) routes, irqfds;
//! - [`gic`]: the in-kernel GICv3 and ITS;
//! - [`regs`]: vCPU init (PSCI 0.2, secondaries powered off), boot registers;
//! - [`uart`]: the 16550A console on MMIO;
//! - [`boot`]: the `Image` and initrd;
//! - [`devicetree`]: the device tree from the machine model;
//! - [`vm`]: building and running the VM.

pub mod boot;
pub mod devicetree;
pub mod gic;
pub mod interrupts;
pub mod layout;
pub mod regs;
pub mod uart;
pub mod vm;

/// The ITS DeviceID of function 0 of `slot` on bus 0 of PCI segment
/// `segment`: what the device tree's `msi-map` gives its requester ID
/// (`dmavm_fdt::layout`: segment `s` has DeviceIDs from `s << 12`).
pub fn its_device_id(segment: u16, slot: u8) -> anyhow::Result<u32> {
    let layout = dmavm_fdt::layout::pci_segment(segment)
        .ok_or_else(|| anyhow::anyhow!("PCI segment {segment} has no place in the arm64 layout"))?;
    Ok(layout.its_device_base + u32::from(crate::machine::pci_bdf(slot)))
}
