//! What the device tree of an arm64 guest declares about the machine: the
//! model as the fdt crate's description ([`dmavm_fdt::Machine`]). Like the
//! ACPI tables ([`crate::acpi`], [`crate::scope`]) it is generated from the
//! model alone, so the two firmware descriptions cannot disagree about a
//! device's coherency or IOMMU scope (docs/architecture.md, "The DMA
//! contract").
//!
//! Addresses come from the arm64 map ([`crate::layout::aarch64`]); the
//! DMA properties depend only on the placement, which both maps share:
//!
//! - virtio-mmio window `n` is the map's `n`th window (`0x0a00_0000 +
//!   n * 0x1000`, SPI `16 + n`), with the device's `coherent`
//!   (`dma-coherent`) and endpoint ID (`iommus = <&viommu ID>`);
//! - the host bridge of segment `s` is the map's `pcie@` node of segment
//!   `s` (`linux,pci-domain = s`), with the bridge's `coherent`
//!   (`dma-coherent`) and, as `iommu-map`, exactly the VIOT's PCI ranges of
//!   that segment: same requester IDs, same endpoint IDs (`s << 16 | BDF`),
//!   so a function has one endpoint ID whichever table the guest reads;
//! - the virtio-iommu is the `iommu@` node of its window, or the `iommu@D`
//!   child of its bridge, never in its own scope.

use dmavm_fdt::{MemoryRange, PciFunction, PciIommuRange, PciIommuScope, VirtioIommu};

use crate::dma::{DmaPath, DmaPool};

use crate::error::{fail, Result};
use crate::layout::aarch64::{
    pci_segment, virt_machine, virtio_mmio_device, BOOT_WINDOW, FDT_REGION, MAX_VCPUS, RAM_MAX, RAM_START,
};
use crate::{pci_bdf, DeviceKind, Machine, Placement};

/// The top of what the arm64 back end may load into (kernel, initrd,
/// device tree) for `memory` bytes of RAM and restricted DMA pools from
/// `lowest_pool` up: the top of the boot window, or of RAM if smaller, and
/// never above a pool.
pub fn boot_top(memory: u64, lowest_pool: Option<u64>) -> u64 {
    let top = RAM_START + memory.min(BOOT_WINDOW);
    lowest_pool.map_or(top, |pool| top.min(pool))
}

/// Where the device tree blob goes below `boot_top` ([`boot_top`], or
/// [`Machine::boot_top`]): the 2 MiB region at the top; `None` if RAM is
/// too small. The arm64 back end loads the blob there, and `describe`
/// describes it there.
pub fn fdt_region(boot_top: u64) -> Option<MemoryRange> {
    let base = (boot_top & !(FDT_REGION - 1)).checked_sub(FDT_REGION)?;
    (base >= RAM_START).then_some(MemoryRange::new(base, FDT_REGION))
}

/// Where an initrd of `size` bytes goes below `boot_top`: page aligned,
/// right below the device tree's region, as the arm64 back end loads it;
/// so the `/chosen` that `describe` prints is the guest's.
pub fn initrd_region(boot_top: u64, size: u64) -> Result<MemoryRange> {
    let memory = boot_top.saturating_sub(RAM_START);
    let base = fdt_region(boot_top).and_then(|fdt| fdt.base.checked_sub(size)).map(|b| b & !0xfff);
    match base {
        Some(base) if size > 0 && base >= RAM_START => Ok(MemoryRange::new(base, size)),
        _ => fail!(
            Layout,
            "an initrd of {size} bytes does not fit below the device tree in {} MiB of RAM (below the \
             restricted DMA pools, if any)",
            memory >> 20
        ),
    }
}

/// The index of `pool` among `pools`.
fn pool_index(pools: &[DmaPool], pool: DmaPool) -> Option<usize> {
    pools.iter().position(|p| *p == pool)
}

/// Whether the arm64 layout has room for `cpus` vCPUs.
pub fn check_cpus(cpus: usize) -> Result<()> {
    if cpus > MAX_VCPUS {
        fail!(
            Layout,
            "--cpus {cpus}: the aarch64 machine has GIC redistributors for at most {MAX_VCPUS} vCPUs"
        );
    }
    Ok(())
}

/// The requester IDs of `segment` the IOMMU translates, as `iommu-map`
/// ranges: the VIOT's ranges, so both tables give every function the same
/// endpoint ID ([`crate::scope`] decides them once).
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

impl Machine {
    /// The top of what the arm64 back end loads into: [`boot_top`] below
    /// this machine's lowest restricted DMA pool.
    pub fn boot_top(&self) -> u64 {
        boot_top(self.memory, self.dma_pools().iter().map(|p| p.base).min())
    }

    /// The device tree description of this machine with vCPUs of MPIDRs
    /// `mpidrs` (as KVM reports them;
    /// [`crate::layout::aarch64::kvm_mpidr`] gives KVM's defaults), its
    /// RAM from the layout's `RAM_START`, `bootargs` and the initrd at
    /// `initrd` (see [`initrd_region`]). Devices sit in the arm64 map's
    /// windows of their placement. Refuses what the arm64 layout has no
    /// room for; [`dmavm_fdt::build`] validates the rest.
    pub fn dt(
        &self,
        mpidrs: &[u64],
        bootargs: &str,
        initrd: Option<MemoryRange>,
    ) -> Result<dmavm_fdt::Machine> {
        let memory = self.memory;
        check_cpus(mpidrs.len())?;
        if memory > RAM_MAX {
            fail!(
                Layout,
                "--memory {} MiB: the aarch64 machine has room for at most {} MiB of RAM",
                memory >> 20,
                RAM_MAX >> 20
            );
        }
        // At most MAX_VCPUS, checked above.
        let mut m = virt_machine(mpidrs.len() as u32, memory, bootargs);
        let pools = self.dma_pools();
        m.cpus = mpidrs.to_vec();
        m.chosen.initrd = initrd;
        for d in &self.devices {
            match d.placement {
                Placement::Mmio { window } => {
                    let Some(mut device) = virtio_mmio_device(window, d.coherent, d.dma.endpoint()) else {
                        fail!(
                            Layout,
                            "{}: virtio-mmio window {window} has no place in the aarch64 layout",
                            d.id
                        )
                    };
                    if d.kind == DeviceKind::Iommu {
                        m.iommu = Some(VirtioIommu::Mmio { base: device.region.base });
                    }
                    device.dma_pool = match (d.dma, d.pool) {
                        (DmaPath::Pool { .. }, Some(p)) => pool_index(&pools, p),
                        _ => None,
                    };
                    m.virtio_mmio.push(device);
                }
                Placement::Pci { segment, slot } if d.kind == DeviceKind::Iommu => {
                    m.iommu = Some(VirtioIommu::Pci { segment, bdf: pci_bdf(slot) });
                }
                Placement::Pci { .. } => {}
            }
        }
        for b in &self.bridges {
            let Some(layout) = pci_segment(b.segment) else {
                fail!(Layout, "{}: PCI segment {} has no place in the aarch64 layout", b.id, b.segment)
            };
            let mut root = layout.root(b.coherent, pci_scope(self, b.segment));
            // Every confined function, its own pool or the bridge's, on a node of its own.
            root.functions = self
                .devices
                .iter()
                .filter_map(|d| match (d.placement, d.dma, d.pool) {
                    (Placement::Pci { segment, slot }, DmaPath::Pool { .. }, Some(p))
                        if segment == b.segment =>
                    {
                        Some(PciFunction { bdf: pci_bdf(slot), dma_pool: pool_index(&pools, p)? })
                    }
                    _ => None,
                })
                .collect();
            m.pci_roots.push(root);
        }
        m.dma_pools = pools.iter().map(|p| MemoryRange::new(p.base, p.size)).collect();
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe::decode::{acpi_facts, dt_facts, Facts, IommuAt};
    use crate::describe::test_machines::CONFIGURATIONS;
    use crate::layout::aarch64::kvm_mpidr;
    use crate::test_utils::machine_for;
    use crate::Arch;

    #[test]
    fn the_blob_and_the_initrd_sit_at_the_top_of_the_boot_window() {
        let top = |memory| boot_top(memory, None);
        let fdt = fdt_region(top(4 << 30)).unwrap();
        assert_eq!((fdt.base, fdt.size), (RAM_START + (1022 << 20), 2 << 20));
        assert_eq!(fdt_region(top(256 << 20)).unwrap().base, RAM_START + (254 << 20));
        assert!(fdt_region(top(1 << 20)).is_none());
        let initrd = initrd_region(top(1 << 30), 0x1234).unwrap();
        assert_eq!(initrd.base, (fdt.base - 0x1234) & !0xfff);
        assert!(initrd.base + initrd.size <= fdt.base);
        let err = initrd_region(top(16 << 20), 15 << 20).unwrap_err().to_string();
        assert!(err.contains("does not fit below the device tree in 16 MiB of RAM"), "{err}");
        assert!(initrd_region(top(1 << 30), 0).is_err());
        // Pools at the top of a small RAM push the blob and initrd below them; pools above
        // the boot window change nothing.
        assert_eq!(boot_top(256 << 20, Some(RAM_START + (250 << 20))), RAM_START + (250 << 20));
        assert_eq!(boot_top(4 << 30, Some(RAM_START + (4 << 30) - (4 << 20))), RAM_START + (1 << 30));
    }

    #[test]
    fn what_the_layout_has_no_room_for_is_refused() {
        let cpus = |n: u32| (0..n).map(kvm_mpidr).collect::<Vec<u64>>();
        let m = machine_for(Arch::Aarch64, &[]);
        let err = m.dt(&cpus(124), "", None).unwrap_err().to_string();
        assert!(err.contains("at most 123 vCPUs"), "{err}");
        let big = Machine { memory: RAM_MAX + (1 << 20), ..m.clone() };
        let err = big.dt(&cpus(1), "", None).unwrap_err().to_string();
        assert!(err.contains("room for at most"), "{err}");
        let dt = Machine { memory: RAM_MAX, ..m }.dt(&cpus(123), "", None).unwrap();
        assert_eq!(dt.cpus[17], 0x101, "KVM's MPIDR of vCPU 17");
    }

    /// The model's own view, to check that the two tables are not equally
    /// wrong: every device's and bridge's coherency and endpoint ID.
    fn agrees_with_the_model(name: &str, m: &Machine, facts: &Facts) {
        for b in &m.bridges {
            let root = &facts.pci[&b.segment];
            assert_eq!(root.coherent, b.coherent, "{name}: bridge {}", b.id);
        }
        assert_eq!(facts.pci.len(), m.bridges.len(), "{name}: one root per bridge");
        let mut mmio = 0;
        for d in &m.devices {
            match d.placement {
                Placement::Mmio { window } => {
                    mmio += 1;
                    let f = &facts.mmio[&window];
                    assert_eq!(f.coherent, d.coherent, "{name}: {}", d.id);
                    assert_eq!(f.endpoint, d.dma.endpoint(), "{name}: {}", d.id);
                    assert_eq!(f.is_iommu, d.kind == DeviceKind::Iommu, "{name}: {}", d.id);
                }
                Placement::Pci { segment, slot } => {
                    let bdf = pci_bdf(slot);
                    assert_eq!(facts.pci[&segment].endpoint(bdf), d.dma.endpoint(), "{name}: {}", d.id);
                    if d.kind == DeviceKind::Iommu {
                        assert_eq!(facts.iommu, Some(IommuAt::Pci { segment, bdf }), "{name}");
                    }
                }
            }
        }
        assert_eq!(facts.mmio.len(), mmio, "{name}: one node per virtio-mmio device");
        assert_eq!(facts.iommu.is_some(), m.devices.iter().any(|d| d.kind == DeviceKind::Iommu), "{name}");
    }

    /// The ACPI tables and the device tree of the same machine options
    /// declare the same devices, the same coherency and the same IOMMU
    /// scope, decoded from the bytes each guest would get (the DSDT and
    /// VIOT; the DTB through `dmavm_fdt::parse`).
    #[test]
    fn acpi_and_device_tree_declare_the_same_machine() {
        for (name, args) in CONFIGURATIONS {
            let x86 = machine_for(Arch::X86_64, args);
            let acpi = acpi_facts(&x86.acpi_tables().unwrap());
            let arm = machine_for(Arch::Aarch64, args);
            let cpus = [kvm_mpidr(0), kvm_mpidr(1)];
            let blob = dmavm_fdt::build(&arm.dt(&cpus, "console=ttyS0", None).unwrap()).unwrap();
            let dt = dt_facts(&blob);
            assert_eq!(acpi, dt, "{name}: ACPI and DT disagree");
            agrees_with_the_model(name, &x86, &acpi);
            agrees_with_the_model(name, &arm, &dt);
        }
    }
}
