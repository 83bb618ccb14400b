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
//! - [`vm`]: building and running the VM.

pub mod boot;
pub mod gic;
pub mod interrupts;
pub mod layout;
pub mod regs;
pub mod uart;
pub mod vm;

/// The ITS DeviceID of function 0 of `slot` on bus 0 of PCI segment
/// `segment`: what the device tree's `msi-map` gives its requester ID
/// (the arm64 map: segment `s` has DeviceIDs from `s << 12`).
pub fn its_device_id(segment: u16, slot: u8) -> anyhow::Result<u32> {
    let layout = layout::pci_segment(segment)
        .ok_or_else(|| anyhow::anyhow!("PCI segment {segment} has no place in the arm64 layout"))?;
    Ok(layout.its_device_base + u32::from(dmavm_machine::pci_bdf(slot)))
}

/// The ITS's translation frame (GITS_TRANSLATER at offset 0x40 of the
/// second 64 KiB page, Arm IHI 0069 12.19), inclusive, which the
/// virtio-iommu reports to the guest as a hardware MSI region
/// (RESV_MEM_T_MSI). Linux then sends the MSIs of translated PCI functions
/// to the doorbell's physical address (cookie_init_hw_msi_region() in
/// drivers/iommu/dma-iommu.c) instead of an IOVA it maps in the function's
/// domain (the software MSI window it assumes without one), which KVM could
/// not route: KVM_IRQ_ROUTING_MSI finds the ITS by the message's address.
pub const ITS_MSI_REGION: (u64, u64) = {
    let its = layout::GIC_ITS;
    (its.base + 0x1_0000, its.base + its.size - 1)
};
