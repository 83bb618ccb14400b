//! The device tree the arm64 guest boots with, from the machine model (the
//! same model the ACPI tables come from on x86_64, so the DMA properties
//! are declared by the same rules): every virtio-mmio device with its
//! window and SPI, `dma-coherent` exactly when coherent and `iommus` exactly
//! when translated; every host bridge with its coherency and, as
//! `iommu-map`, exactly the VIOT's PCI ranges of its segment (same
//! requester IDs, same endpoint IDs); the virtio-iommu's node.
//!
//! A private conversion of the arm64 back end until the machine model's own
//! (`machine/dt.rs`, for `dmavm describe`) lands; both follow the fdt
//! crate's layout and the placement rules of [`super::layout`].

use anyhow::{bail, Result};
use dmavm_fdt::layout::{pci_segment, virtio_mmio_device};
use dmavm_fdt::{MemoryRange, PciIommuRange, PciIommuScope, VirtioIommu};

use super::layout::virtio_mmio_index;
use crate::machine::{pci_bdf, DeviceKind, Machine, Placement};

/// The requester IDs of `segment` the IOMMU translates: the VIOT's ranges.
fn pci_scope(machine: &Machine, segment: u16) -> PciIommuScope {
    let Some(viot) = machine.acpi_viot() else { return PciIommuScope::Bypass };
    let ranges: Vec<PciIommuRange> = viot
        .pci_ranges
        .iter()
        .filter(|r| r.segment == segment)
        .map(|r| PciIommuRange {
            rid_start: r.bdf_start,
            rid_end: r.bdf_end,
            endpoint_start: r.endpoint_start,
        })
        .collect();
    if ranges.is_empty() {
        PciIommuScope::Bypass
    } else {
        PciIommuScope::Ranges(ranges)
    }
}

/// The description of `machine` with vCPUs of MPIDRs `mpidrs`, `memory`
/// bytes of RAM, `bootargs` and the initrd at `initrd`.
pub fn describe(
    machine: &Machine,
    mpidrs: &[u64],
    memory: u64,
    bootargs: &str,
    initrd: Option<MemoryRange>,
) -> Result<dmavm_fdt::Machine> {
    let cpus = u32::try_from(mpidrs.len())?;
    let mut m = dmavm_fdt::Machine::virt(cpus, memory, bootargs);
    m.cpus = mpidrs.to_vec();
    m.chosen.initrd = initrd;
    for d in &machine.devices {
        match d.placement {
            Placement::Mmio { base, .. } => {
                let device =
                    virtio_mmio_index(base).and_then(|i| virtio_mmio_device(i, d.coherent, d.endpoint));
                let Some(device) = device else {
                    bail!("{}: virtio-mmio window {base:#x} has no place in the arm64 layout", d.id)
                };
                if d.kind == DeviceKind::Iommu {
                    m.iommu = Some(VirtioIommu::Mmio { base: device.region.base });
                }
                m.virtio_mmio.push(device);
            }
            Placement::Pci { segment, slot } if d.kind == DeviceKind::Iommu => {
                m.iommu = Some(VirtioIommu::Pci { segment, bdf: pci_bdf(slot) });
            }
            Placement::Pci { .. } => {}
        }
    }
    for b in &machine.bridges {
        let Some(layout) = pci_segment(b.segment) else {
            bail!("{}: PCI segment {} has no place in the arm64 layout", b.id, b.segment)
        };
        m.pci_roots.push(layout.root(b.coherent, pci_scope(machine, b.segment)));
    }
    Ok(m)
}
