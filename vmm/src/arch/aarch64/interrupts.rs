//! Interrupt delivery into KVM's in-kernel GICv3 and its ITS: the arm64
//! counterpart of the x86_64 `interrupts` module, with the names the shared
//! device wiring (`virtio_devices.rs`) uses.
//!
//! - Wired interrupts (the UART, virtio-mmio devices) are SPIs raised by
//!   irqfd: the GSI an irqfd is registered on has a
//!   `KVM_IRQ_ROUTING_IRQCHIP` route whose pin is the SPI number
//!   (arch/arm64/kvm/vgic/vgic-irqfd.c adds the 32 private interrupts;
//!   Documentation/virt/kvm/api.rst, KVM_SET_GSI_ROUTING). A virtio-mmio
//!   window's GSI is its SPI number, which the device tree declares.
//! - MSI-X vectors of PCI functions go through the ITS: each vector has a
//!   GSI with a `KVM_IRQ_ROUTING_MSI` route carrying the function's ITS
//!   DeviceID (`KVM_MSI_VALID_DEVID`: with an ITS, KVM refuses MSIs without
//!   one, `msis_require_devid` in vgic_init()), and an irqfd.
//!
//! The routing table's owner and the irqfds are shared with x86_64
//! (`crate::irqfd`). `KVM_SET_GSI_ROUTING` replaces the whole table,
//! including the identity routes vgic_init() installs, so the router must
//! only be used after the vGIC is initialised (which would otherwise
//! reinstall its defaults).

use anyhow::{Context, Result};
use kvm_bindings::{kvm_irq_routing_entry, kvm_irq_routing_irqchip, KVM_IRQ_ROUTING_IRQCHIP};

pub use crate::irqfd::{GsiRouter, IrqfdMsix, IrqfdPin};

/// First GSI handed out for MSI-X vectors: above the virtio-mmio windows'
/// (their SPI numbers) and the UART's ([`super::uart::GSI`]).
pub const FIRST_MSI_GSI: u32 = super::layout::VIRTIO_MMIO_FIRST_SPI + super::layout::VIRTIO_MMIO_WINDOWS;
/// Whether every MSI must carry its requester's DeviceID: yes, with an ITS
/// KVM refuses MSI routes without one (`msis_require_devid` in
/// vgic_init()).
pub const MSIS_CARRY_DEVICE_ID: bool = true;

/// `kvm_irq_routing_irqchip.irqchip` of the (only) vGIC.
const GIC_IRQCHIP: u32 = 0;

/// Routes `gsi` to SPI `spi` (INTID 32 + `spi`).
pub fn route_spi(router: &GsiRouter, gsi: u32, spi: u32) -> Result<()> {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
    e.u.irqchip = kvm_irq_routing_irqchip { irqchip: GIC_IRQCHIP, pin: spi };
    router.try_set(&[(gsi, Some(e))]).with_context(|| format!("routing GSI {gsi} to SPI {spi}"))
}

/// The DeviceID the MSIs of function 0 of `slot` carry: its ITS DeviceID on bus 0 of PCI segment
/// `segment`: what the device tree's `msi-map` gives its requester ID
/// (the arm64 map: segment `s` has DeviceIDs from `s << 12`).
pub fn msi_device_id(segment: u16, slot: u8) -> Result<Option<u32>> {
    let layout = super::layout::pci_segment(segment)
        .ok_or_else(|| anyhow::anyhow!("PCI segment {segment} has no place in the arm64 layout"))?;
    Ok(Some(layout.its_device_base + u32::from(dmavm_machine::pci_bdf(slot))))
}

/// The ITS's translation frame (GITS_TRANSLATER at offset 0x40 of the
/// second 64 KiB page, Arm IHI 0069 12.19), inclusive, which the
/// virtio-iommu reports to the guest as a hardware MSI region
/// (RESV_MEM_T_MSI). Linux then sends the MSIs of translated PCI functions
/// to the doorbell's physical address (cookie_init_hw_msi_region() in
/// drivers/iommu/dma-iommu.c) instead of an IOVA it maps in the function's
/// domain (the software MSI window it assumes without one), which KVM could
/// not route: KVM_IRQ_ROUTING_MSI finds the ITS by the message's address.
pub const IOMMU_MSI_REGION: Option<(u64, u64)> = {
    let its = super::layout::GIC_ITS;
    Some((its.base + 0x1_0000, its.base + its.size - 1))
};
