//! The device tree itself, written with vm-fdt.
//!
//! Node order: the root's properties, `/chosen`, `/aliases`, the `memory` nodes,
//! `/reserved-memory` (when there are restricted DMA pools), `/cpus`,
//! `/psci`, the GIC (with its ITS), the timer, the UART's clock, the UART, the virtio-mmio
//! devices, the PCI host bridges. All addresses and sizes at the root are two cells.

use vm_fdt::FdtWriter;

use crate::description::{Machine, MemoryRange, PciIommuScope, PciRoot, Uart, VirtioIommu, VirtioMmioDevice};
use crate::error::Error;
use crate::validate::{ecam_region, rid_count, validate, MPIDR_AFFINITY};

/// Largest device tree blob arm64 Linux accepts (Documentation/arch/arm64/booting.rst: the blob
/// must lie within one 2 MiB region).
pub const FDT_MAX_SIZE: usize = 2 << 20;

/// phandles: fixed, so a tree is easy to read and the same machine always gives the same blob.
pub(crate) const PHANDLE_GIC: u32 = 1;
pub(crate) const PHANDLE_ITS: u32 = 2;
pub(crate) const PHANDLE_CLOCK: u32 = 3;
pub(crate) const PHANDLE_VIOMMU: u32 = 4;
/// phandle of restricted DMA pool `i`: `PHANDLE_FIRST_POOL + i`.
pub(crate) const PHANDLE_FIRST_POOL: u32 = 5;

/// The phandle of pool `index` (validation bounds the index by the pools' count).
fn pool_phandle(index: usize) -> u32 {
    PHANDLE_FIRST_POOL.saturating_add(u32::try_from(index).unwrap_or(u32::MAX))
}

/// `/reserved-memory` with one `restricted-dma-pool` per pool (reserved-memory/reserved-memory.yaml
/// and shared-dma-pool.yaml): the root's address space (`ranges` empty, two cells each); neither
/// `no-map` nor `reusable`, which Linux refuses for a restricted pool (`rmem_swiotlb_setup()` in
/// kernel/dma/swiotlb.c): the guest maps the pool and bounces through it.
fn reserved_memory(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    if m.dma_pools.is_empty() {
        return Ok(());
    }
    let node = fdt.begin_node("reserved-memory")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    for (i, pool) in m.dma_pools.iter().enumerate() {
        let child = fdt.begin_node(&format!("dma-pool@{:x}", pool.base))?;
        fdt.property_string("compatible", "restricted-dma-pool")?;
        fdt.property_array_u64("reg", &reg(pool))?;
        fdt.property_phandle(pool_phandle(i))?;
        fdt.end_node(child)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// First cell of a GIC interrupt specifier (interrupt-controller/arm,gic-v3.yaml).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Third cell: trigger type (include/dt-bindings/interrupt-controller/irq.h).
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// phys.hi of a PCI address (IEEE 1275 PCI bus binding, Documentation/devicetree/bindings/pci/
/// pci.txt): bits 25:24 are the space code, 0b01 I/O, 0b10 32-bit memory, 0b11 64-bit memory.
const PCI_SPACE_IO: u32 = 0x0100_0000;
const PCI_SPACE_MEM32: u32 = 0x0200_0000;
const PCI_SPACE_MEM64: u32 = 0x0300_0000;

/// The PCI vendor and device ID of a virtio-iommu (virtio 1.2 section 4.1.2.1: 0x1040 + device
/// ID 23), as the PCI bus binding spells a compatible.
const VIRTIO_IOMMU_PCI_COMPATIBLE: &str = "pci1af4,1057";

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

fn lo(v: u64) -> u32 {
    v as u32
}

/// `reg` of one region with two address and two size cells.
fn reg(r: &MemoryRange) -> [u64; 2] {
    [r.base, r.size]
}

/// The path of the UART node, for `stdout-path` and the alias.
pub(crate) fn uart_path(m: &Machine) -> String {
    format!("/serial@{:x}", m.uart.region().base)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn chosen(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &m.chosen.bootargs)?;
    fdt.property_string("stdout-path", &uart_path(m))?;
    if let Some(initrd) = m.chosen.initrd {
        // Linux reads either width (drivers/of/fdt.c, early_init_dt_check_for_initrd); the end
        // is exclusive. Validation put the initrd inside RAM, so the end does not wrap.
        fdt.property_u64("linux,initrd-start", initrd.base)?;
        fdt.property_u64("linux,initrd-end", initrd.base + initrd.size)?;
    }
    fdt.end_node(node)?;
    let node = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", &uart_path(m))?;
    fdt.end_node(node)?;
    Ok(())
}

fn memory(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    for r in &m.memory {
        let node = fdt.begin_node(&format!("memory@{:x}", r.base))?;
        fdt.property_string("device_type", "memory")?;
        fdt.property_array_u64("reg", &reg(r))?;
        fdt.end_node(node)?;
    }
    Ok(())
}

/// `/cpus`: one cell of `reg` while every Aff3 is 0, two otherwise (arm/cpus.yaml).
fn cpus(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    let two_cells = m.cpus.iter().any(|mpidr| mpidr & MPIDR_AFFINITY > 0xff_ffff);
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", if two_cells { 2 } else { 1 })?;
    fdt.property_u32("#size-cells", 0)?;
    for mpidr in &m.cpus {
        let affinity = mpidr & MPIDR_AFFINITY;
        let cpu = fdt.begin_node(&format!("cpu@{affinity:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        if two_cells {
            fdt.property_u64("reg", affinity)?;
        } else {
            fdt.property_u32("reg", affinity as u32)?;
        }
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// PSCI 1.0 through HVC: KVM implements it (arm/psci.yaml; "arm,psci-0.2" for older kernels).
fn psci(fdt: &mut FdtWriter) -> Result<(), Error> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2"]))?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(node)?;
    Ok(())
}

/// The GICv3 with distributor and one redistributor region, and its ITS as a child
/// (interrupt-controller/arm,gic-v3.yaml).
fn gic(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    let gic = &m.gic;
    let node = fdt.begin_node(&format!("interrupt-controller@{:x}", gic.distributor.base))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    let [dist_base, dist_size] = reg(&gic.distributor);
    let [redist_base, redist_size] = reg(&gic.redistributors);
    fdt.property_array_u64("reg", &[dist_base, dist_size, redist_base, redist_size])?;
    fdt.property_phandle(PHANDLE_GIC)?;
    if let Some(its) = gic.its {
        // The ITS is addressed in the root's address space: identity `ranges`.
        fdt.property_u32("#address-cells", 2)?;
        fdt.property_u32("#size-cells", 2)?;
        fdt.property_null("ranges")?;
        let child = fdt.begin_node(&format!("msi-controller@{:x}", its.base))?;
        fdt.property_string("compatible", "arm,gic-v3-its")?;
        fdt.property_null("msi-controller")?;
        // The one cell is the DeviceID.
        fdt.property_u32("#msi-cells", 1)?;
        fdt.property_array_u64("reg", &reg(&its))?;
        fdt.property_phandle(PHANDLE_ITS)?;
        fdt.end_node(child)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// The architected timer: four PPIs in the binding's order (timer/arm,arch_timer.yaml); with a
/// GICv3 the flags cell has no CPU mask. `always-on`: the timers of a KVM vCPU keep counting in
/// every idle state.
fn timer(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    let t = &m.timer;
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let mut cells = Vec::new();
    for ppi in [t.secure_phys, t.phys, t.virt, t.hyp_phys] {
        cells.extend([GIC_PPI, ppi, IRQ_TYPE_LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.property_null("always-on")?;
    fdt.end_node(node)?;
    Ok(())
}

/// The console UART.
fn uart(fdt: &mut FdtWriter, m: &Machine) -> Result<(), Error> {
    match &m.uart {
        Uart::Pl011(u) => pl011(fdt, u),
        Uart::Ns16550a(u) => ns16550a(fdt, u),
    }
}

/// A 16550A (serial/8250.yaml): `reg-shift` and `reg-io-width` keep their defaults (byte
/// registers at consecutive addresses); the interrupt is an edge (see [`crate::Ns16550a`]).
fn ns16550a(fdt: &mut FdtWriter, u: &crate::Ns16550a) -> Result<(), Error> {
    let node = fdt.begin_node(&format!("serial@{:x}", u.region.base))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &reg(&u.region))?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, u.spi, IRQ_TYPE_EDGE_RISING])?;
    fdt.property_u32("clock-frequency", u.clock_hz)?;
    fdt.end_node(node)?;
    Ok(())
}

/// The PL011 and the fixed clock it names twice, as UARTCLK and APB PCLK (serial/pl011.yaml:
/// listing only UARTCLK is deprecated; arm/primecell.yaml wants `apb_pclk` for the AMBA bus
/// driver, which enables that clock before it reads the PrimeCell ID).
fn pl011(fdt: &mut FdtWriter, u: &crate::Pl011) -> Result<(), Error> {
    // clock/fixed-clock.yaml prefers `clock-<frequency>` as the node name.
    let node = fdt.begin_node(&format!("clock-{}", u.clock_hz))?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", u.clock_hz)?;
    fdt.property_string("clock-output-names", "apb_pclk")?;
    fdt.property_phandle(PHANDLE_CLOCK)?;
    fdt.end_node(node)?;

    let node = fdt.begin_node(&format!("serial@{:x}", u.region.base))?;
    fdt.property_string_list("compatible", strings(&["arm,pl011", "arm,primecell"]))?;
    fdt.property_array_u64("reg", &reg(&u.region))?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, u.spi, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[PHANDLE_CLOCK, PHANDLE_CLOCK])?;
    fdt.property_string_list("clock-names", strings(&["uartclk", "apb_pclk"]))?;
    fdt.end_node(node)?;
    Ok(())
}

/// One `virtio,mmio` node (virtio/mmio.yaml). The virtio-iommu's is named `iommu@` and carries
/// `#iommu-cells`; a translated device carries `iommus`. Interrupts are edge triggered: the
/// device raises its SPI once per used-buffer or configuration notification.
fn virtio_mmio(fdt: &mut FdtWriter, d: &VirtioMmioDevice, is_iommu: bool) -> Result<(), Error> {
    let name = if is_iommu { "iommu" } else { "virtio" };
    let node = fdt.begin_node(&format!("{name}@{:x}", d.region.base))?;
    fdt.property_string("compatible", "virtio,mmio")?;
    fdt.property_array_u64("reg", &reg(&d.region))?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, d.spi, IRQ_TYPE_EDGE_RISING])?;
    if d.coherent {
        fdt.property_null("dma-coherent")?;
    }
    if let Some(endpoint) = d.iommu_endpoint {
        fdt.property_array_u32("iommus", &[PHANDLE_VIOMMU, endpoint])?;
    }
    if let Some(pool) = d.dma_pool {
        fdt.property_u32("memory-region", pool_phandle(pool))?;
    }
    if is_iommu {
        // The one cell is the endpoint ID.
        fdt.property_u32("#iommu-cells", 1)?;
        fdt.property_phandle(PHANDLE_VIOMMU)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// One `ranges` entry of a host bridge: PCI address (3 cells), CPU address (2), size (2).
fn pci_range(cells: &mut Vec<u32>, space: u32, pci_address: u64, cpu: &MemoryRange) {
    cells.extend([
        space,
        hi(pci_address),
        lo(pci_address),
        hi(cpu.base),
        lo(cpu.base),
        hi(cpu.size),
        lo(cpu.size),
    ]);
}

/// One `pci-host-ecam-generic` node (pci/host-generic-pci.yaml, on dtschema's
/// pci-host-bridge.yaml and pci-bus-common.yaml), and the virtio-iommu below it if it is there.
fn pci_root(fdt: &mut FdtWriter, root: &PciRoot, iommu_bdf: Option<u16>) -> Result<(), Error> {
    let ecam = ecam_region(root);
    let node = fdt.begin_node(&format!("pcie@{:x}", ecam.base))?;
    fdt.property_string("compatible", "pci-host-ecam-generic")?;
    fdt.property_string("device_type", "pci")?;
    fdt.property_u32("#address-cells", 3)?;
    fdt.property_u32("#size-cells", 2)?;
    // No `#interrupt-cells`: it belongs with an `interrupt-map` that routes INTx pins
    // (pci-bus-common.yaml), and there is none; devices use MSI/MSI-X through `msi-map` only.
    // Without a map, the property would declare the bridge an interrupt nexus that cannot
    // translate anything (dtc 1.8's interrupt_provider check); host-generic-pci.yaml does not
    // require it.
    fdt.property_array_u32("bus-range", &[u32::from(root.bus_start), u32::from(root.bus_end)])?;
    fdt.property_u32("linux,pci-domain", u32::from(root.segment))?;
    // The binding's `reg` starts at the configuration space of the first bus of `bus-range`.
    fdt.property_array_u64("reg", &reg(&ecam))?;
    let mut ranges = Vec::new();
    if let Some(io) = root.io {
        pci_range(&mut ranges, PCI_SPACE_IO, 0, &io);
    }
    pci_range(&mut ranges, PCI_SPACE_MEM32, root.mem32.base, &root.mem32);
    if let Some(mem64) = root.mem64 {
        pci_range(&mut ranges, PCI_SPACE_MEM64, mem64.base, &mem64);
    }
    fdt.property_array_u32("ranges", &ranges)?;
    // msi-map = <rid-base &its msi-base length> (pci/pci-msi.txt): every requester ID of the
    // bridge's buses to its own ITS DeviceID.
    let rid_base = u32::from(root.bus_start) << 8;
    fdt.property_array_u32("msi-map", &[rid_base, PHANDLE_ITS, root.its_device_base, rid_count(root)])?;
    if root.coherent {
        fdt.property_null("dma-coherent")?;
    }
    // iommu-map = <rid-base &viommu iommu-base length>... (pci/pci-iommu.txt): exactly the
    // translated requester IDs. Linux's of_map_id() gives a RID outside every entry no IOMMU at
    // all, which is how bypassing functions and the IOMMU itself stay out of its scope; an empty
    // map is malformed to it, so a bridge that translates nothing has no `iommu-map`.
    if let PciIommuScope::Ranges(list) = &root.iommu {
        if !list.is_empty() {
            let mut cells = Vec::with_capacity(list.len() * 4);
            for r in list {
                let len = u32::from(r.rid_end - r.rid_start) + 1;
                cells.extend([u32::from(r.rid_start), PHANDLE_VIOMMU, r.endpoint_start, len]);
            }
            fdt.property_array_u32("iommu-map", &cells)?;
        }
    }
    for f in &root.functions {
        // The PCI bus binding's node of a function: reg phys.hi = 0b00000000 bbbbbbbb dddddfff
        // 00000000, the other cells 0; Linux gives the function this node (pci_set_of_node())
        // and reads its memory-region before the bridge's.
        let child = fdt.begin_node(&format!("virtio@{}", pci_unit(f.bdf)))?;
        fdt.property_array_u32("reg", &[u32::from(f.bdf) << 8, 0, 0, 0, 0])?;
        fdt.property_u32("memory-region", pool_phandle(f.dma_pool))?;
        fdt.end_node(child)?;
    }
    if let Some(bdf) = iommu_bdf {
        // virtio/pci-iommu.yaml: a child of the host bridge; reg is the PCI address of its
        // configuration space, phys.hi = 0b00000000 bbbbbbbb dddddfff 00000000, other cells 0;
        // the unit address is "device" or "device,function" (PCI bus binding). Linux finds the
        // node by devfn among the children of the root bus's node (of_pci_find_child_device),
        // which is why the IOMMU must sit on the bridge's first bus.
        let child = fdt.begin_node(&format!("iommu@{}", pci_unit(bdf)))?;
        fdt.property_string("compatible", VIRTIO_IOMMU_PCI_COMPATIBLE)?;
        fdt.property_array_u32("reg", &[u32::from(bdf) << 8, 0, 0, 0, 0])?;
        fdt.property_u32("#iommu-cells", 1)?;
        fdt.property_phandle(PHANDLE_VIOMMU)?;
        fdt.end_node(child)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

/// The unit address of a function's node: "device" or "device,function" (PCI bus binding).
fn pci_unit(bdf: u16) -> String {
    let (device, function) = ((bdf >> 3) & 0x1f, bdf & 7);
    if function == 0 {
        format!("{device:x}")
    } else {
        format!("{device:x},{function:x}")
    }
}

/// The device tree blob of `m`, after [`validate`]: see the crate documentation for the tree.
pub fn build(m: &Machine) -> Result<Vec<u8>, Error> {
    validate(m)?;
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", &m.model)?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;
    chosen(&mut fdt, m)?;
    memory(&mut fdt, m)?;
    reserved_memory(&mut fdt, m)?;
    cpus(&mut fdt, m)?;
    psci(&mut fdt)?;
    gic(&mut fdt, m)?;
    timer(&mut fdt, m)?;
    uart(&mut fdt, m)?;
    let mmio_iommu = match m.iommu {
        Some(VirtioIommu::Mmio { base }) => Some(base),
        _ => None,
    };
    for d in &m.virtio_mmio {
        virtio_mmio(&mut fdt, d, mmio_iommu == Some(d.region.base))?;
    }
    for r in &m.pci_roots {
        let iommu_bdf = match m.iommu {
            Some(VirtioIommu::Pci { segment, bdf }) if segment == r.segment => Some(bdf),
            _ => None,
        };
        pci_root(&mut fdt, r, iommu_bdf)?;
    }
    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() > FDT_MAX_SIZE {
        return Err(Error::TooLarge(blob.len()));
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{pci_segment, virt, virtio_mmio_device};
    use crate::tree::parse;

    #[test]
    fn gic_without_its_has_no_child_address_space() {
        let mut m = virt(1, 1 << 30, "");
        m.gic.its = None;
        let root = parse(&build(&m).unwrap()).unwrap().root;
        let gic = root.find("/interrupt-controller@8000000").unwrap();
        assert!(gic.children.is_empty());
        assert!(!gic.has("ranges") && !gic.has("#address-cells") && !gic.has("#size-cells"));
        assert_eq!(gic.u32("phandle"), Some(PHANDLE_GIC));
    }

    #[test]
    fn cpu_reg_is_the_affinity_of_the_mpidr() {
        let mut m = virt(2, 1 << 30, "");
        // As KVM reports them: bit 31 is RES1.
        m.cpus = vec![0x8000_0000, 0x8000_0101];
        let root = parse(&build(&m).unwrap()).unwrap().root;
        assert_eq!(root.find("/cpus/cpu@101").unwrap().u32("reg"), Some(0x101));
        assert_eq!(root.find("/cpus/cpu@0").unwrap().u32("reg"), Some(0));
    }

    #[test]
    fn pci_iommu_of_function_0_and_its_unit_address() {
        let mut m = virt(1, 1 << 30, "");
        let mut root = pci_segment(0).unwrap().root(false, PciIommuScope::all_except(0, 15, 0, &[0x18]));
        root.bus_start = 0;
        m.pci_roots = vec![root];
        m.iommu = Some(VirtioIommu::Pci { segment: 0, bdf: 0x18 });
        m.virtio_mmio = vec![virtio_mmio_device(0, true, Some(0x1_0000)).unwrap()];
        let tree = parse(&build(&m).unwrap()).unwrap().root;
        let iommu = tree.find("/pcie@30000000/iommu@3").unwrap();
        assert_eq!(iommu.u32s("reg").unwrap(), [0x1800, 0, 0, 0, 0]);
        assert_eq!(iommu.u32("phandle"), Some(PHANDLE_VIOMMU));
        assert_eq!(tree.find("/virtio@a000000").unwrap().u32s("iommus").unwrap(), [PHANDLE_VIOMMU, 0x1_0000]);
    }

    #[test]
    fn restricted_pools_and_the_nodes_that_name_them() {
        use crate::description::PciFunction;
        let mut m = virt(1, 1 << 30, "");
        m.dma_pools = vec![MemoryRange::new(0x7fc0_0000, 4 << 20), MemoryRange::new(0x7f80_0000, 1 << 20)];
        let mut device = virtio_mmio_device(0, true, None).unwrap();
        device.dma_pool = Some(1);
        m.virtio_mmio = vec![device, virtio_mmio_device(1, true, None).unwrap()];
        let mut root = pci_segment(0).unwrap().root(true, PciIommuScope::Bypass);
        root.functions = vec![PciFunction { bdf: 0x08, dma_pool: 0 }, PciFunction { bdf: 0x13, dma_pool: 0 }];
        m.pci_roots = vec![root];
        let tree = parse(&build(&m).unwrap()).unwrap().root;
        let reserved = tree.find("/reserved-memory").unwrap();
        assert_eq!(reserved.u32("#address-cells"), Some(2));
        assert!(reserved.has("ranges"));
        for (i, name) in ["dma-pool@7fc00000", "dma-pool@7f800000"].into_iter().enumerate() {
            let pool = tree.find(&format!("/reserved-memory/{name}")).unwrap();
            assert_eq!(pool.string("compatible"), Some("restricted-dma-pool"));
            assert!(!pool.has("no-map") && !pool.has("reusable"));
            assert_eq!(pool.u32("phandle"), Some(PHANDLE_FIRST_POOL + i as u32));
        }
        assert_eq!(tree.find("/virtio@a000000").unwrap().u32("memory-region"), Some(PHANDLE_FIRST_POOL + 1));
        assert!(!tree.find("/virtio@a001000").unwrap().has("memory-region"));
        // The bridge names no pool itself; each function on a node of its own.
        assert!(!tree.find("/pcie@30000000").unwrap().has("memory-region"));
        let f = tree.find("/pcie@30000000/virtio@1").unwrap();
        assert_eq!(f.u32s("reg").unwrap(), [0x0800, 0, 0, 0, 0]);
        assert_eq!(f.u32("memory-region"), Some(PHANDLE_FIRST_POOL));
        assert_eq!(
            tree.find("/pcie@30000000/virtio@2,3").unwrap().u32("memory-region"),
            Some(PHANDLE_FIRST_POOL)
        );
        // Without pools, no /reserved-memory at all.
        let plain = parse(&build(&virt(1, 1 << 30, "")).unwrap()).unwrap().root;
        assert!(plain.find("/reserved-memory").is_none());
    }

    #[test]
    fn pools_that_overlap_leave_ram_or_are_unknown_are_refused() {
        let mut m = virt(1, 1 << 30, "");
        m.dma_pools = vec![MemoryRange::new(0x7fc0_0000, 4 << 20), MemoryRange::new(0x7fe0_0000, 1 << 20)];
        assert!(matches!(build(&m), Err(Error::DmaPoolOverlap { index: 1, .. })));
        m.dma_pools = vec![MemoryRange::new(0x7fe0_0000, 4 << 20)];
        assert!(matches!(build(&m), Err(Error::DmaPoolOutsideRam { index: 0, .. })));
        m.dma_pools = vec![MemoryRange::new(0x7fe0_0800, 4096)];
        assert!(matches!(build(&m), Err(Error::DmaPoolAlignment { index: 0, .. })));
        m.dma_pools = vec![MemoryRange::new(0x7fe0_0000, 4096)];
        m.chosen.initrd = Some(MemoryRange::new(0x7fd0_0000, 2 << 20));
        assert!(matches!(build(&m), Err(Error::DmaPoolOverlap { index: 0, .. })));
        m.chosen.initrd = None;
        let mut device = virtio_mmio_device(0, true, None).unwrap();
        device.dma_pool = Some(1);
        m.virtio_mmio = vec![device];
        assert!(matches!(build(&m), Err(Error::NoSuchDmaPool(_, 1))));
    }

    #[test]
    fn too_large_a_blob_is_refused() {
        let m = virt(1, 1 << 30, &"x".repeat(FDT_MAX_SIZE));
        assert!(matches!(build(&m), Err(Error::TooLarge(_))));
    }
}
