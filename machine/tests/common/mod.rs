//! The device-tree descriptions the encoder tests check, on the arm64 map, and the external
//! tools they run.

// Three test binaries include this module; not every one uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dmavm_fdt::{Machine, MemoryRange, PciIommuScope, Pl011, Uart, VirtioIommu};
use dmavm_machine::layout::aarch64::{
    self as layout, pci_segment, virt_machine, virtio_mmio_device, RAM_START,
};

/// Endpoint ID of PCI function `bdf` of `segment` (the VMM model's numbering: segment in the
/// upper 16 bits) and of the `n`th virtio-mmio device (above every PCI ID).
pub fn pci_endpoint(segment: u16, bdf: u16) -> u32 {
    u32::from(segment) << 16 | u32::from(bdf)
}

pub fn mmio_endpoint(n: u32) -> u32 {
    0x10_0000 + n
}

/// `bus << 8 | device << 3 | function`.
pub const fn bdf(bus: u16, device: u16, function: u16) -> u16 {
    bus << 8 | device << 3 | function
}

fn base(cpus: u32) -> Machine {
    let mut m = virt_machine(cpus, 1 << 30, "console=ttyAMA0 earlycon");
    m.chosen.initrd = Some(MemoryRange::new(RAM_START + (512 << 20), 16 << 20));
    m
}

/// virtio-mmio devices only: one coherent, one not, no IOMMU; no PCI.
pub fn mmio_only() -> Machine {
    let mut m = base(2);
    m.virtio_mmio = vec![
        virtio_mmio_device(0, true, None).unwrap(),
        virtio_mmio_device(1, false, None).unwrap(),
        virtio_mmio_device(2, true, None).unwrap(),
    ];
    m
}

/// One host bridge (with an I/O window and a bus range not starting at 0), no virtio-mmio, no
/// IOMMU, no initrd.
pub fn pci_only() -> Machine {
    let mut m = base(1);
    m.chosen.initrd = None;
    let mut root = pci_segment(0).unwrap().root(true, PciIommuScope::Bypass);
    root.bus_start = 2;
    root.bus_end = 9;
    root.io = Some(MemoryRange::new(0x0f00_0000, 0x1_0000));
    m.pci_roots = vec![root];
    m
}

/// The virtio-iommu on virtio-mmio (slot 0); translated and bypassing mmio devices of both
/// coherencies; a bridge translated but for two functions.
pub fn mixed_iommu_mmio() -> Machine {
    let mut m = base(4);
    m.virtio_mmio = vec![
        virtio_mmio_device(0, true, None).unwrap(), // the IOMMU
        virtio_mmio_device(1, true, Some(mmio_endpoint(1))).unwrap(),
        virtio_mmio_device(2, false, None).unwrap(),
        virtio_mmio_device(3, false, Some(mmio_endpoint(3))).unwrap(),
        virtio_mmio_device(4, true, None).unwrap(),
    ];
    m.iommu = Some(VirtioIommu::Mmio { base: m.virtio_mmio[0].region.base });
    let scope = PciIommuScope::all_except(0, layout::PCI_BUSES - 1, 0, &[bdf(0, 2, 0), bdf(0, 5, 0)]);
    m.pci_roots = vec![pci_segment(0).unwrap().root(true, scope)];
    m
}

/// The virtio-iommu at 00:01.0 of segment 0, which translates the rest of that bridge but
/// 00:03.0, and two mmio devices, one translated.
pub fn mixed_iommu_pci() -> Machine {
    let mut m = base(2);
    m.virtio_mmio = vec![
        virtio_mmio_device(0, true, Some(mmio_endpoint(0))).unwrap(),
        virtio_mmio_device(1, true, None).unwrap(),
    ];
    m.iommu = Some(VirtioIommu::Pci { segment: 0, bdf: bdf(0, 1, 0) });
    let scope = PciIommuScope::all_except(0, layout::PCI_BUSES - 1, 0, &[bdf(0, 1, 0), bdf(0, 3, 0)]);
    m.pci_roots = vec![pci_segment(0).unwrap().root(true, scope)];
    m
}

/// Two bridges of different coherency: segment 0 coherent and translated (the IOMMU at
/// 00:02.3 of it, a function other than 0), segment 1 not coherent and translated but for
/// 0001:00:04.0, its endpoint IDs from 0x10000. 20 vCPUs (MPIDRs with Aff1), RAM in two ranges.
pub fn two_bridges() -> Machine {
    let mut m = base(20);
    m.memory.push(MemoryRange::new(0x40_0000_0000, 1 << 30));
    m.virtio_mmio = vec![virtio_mmio_device(0, false, Some(mmio_endpoint(0))).unwrap()];
    let iommu = bdf(0, 2, 3);
    m.iommu = Some(VirtioIommu::Pci { segment: 0, bdf: iommu });
    m.pci_roots = vec![
        pci_segment(0).unwrap().root(true, PciIommuScope::all_except(0, 15, pci_endpoint(0, 0), &[iommu])),
        pci_segment(1)
            .unwrap()
            .root(false, PciIommuScope::all_except(0, 15, pci_endpoint(1, 0), &[bdf(0, 4, 0)])),
    ];
    m
}

/// An IOMMU that translates nothing: every device and both bridges bypass it (one bridge
/// with `Bypass`, the other with an empty range list).
pub fn all_bypass() -> Machine {
    let mut m = base(2);
    m.virtio_mmio =
        vec![virtio_mmio_device(0, true, None).unwrap(), virtio_mmio_device(1, false, None).unwrap()];
    m.iommu = Some(VirtioIommu::Mmio { base: m.virtio_mmio[0].region.base });
    m.pci_roots = vec![
        pci_segment(0).unwrap().root(true, PciIommuScope::Bypass),
        pci_segment(1).unwrap().root(false, PciIommuScope::Ranges(Vec::new())),
    ];
    m
}

/// CPUs with Aff3 set (two-cell `reg` in `/cpus`), and nothing else.
pub fn aff3_cpus() -> Machine {
    let mut m = base(2);
    m.cpus = vec![0, 0x1_0000_0000, 0x1_0000_0001];
    m.gic = layout::gic(3);
    // The other UART model, so both are encoded and validated.
    m.uart =
        Uart::Pl011(Pl011 { region: layout::UART, spi: layout::UART_SPI, clock_hz: layout::UART_CLOCK_HZ });
    m
}

/// A bridge whose buses start at 2, with the virtio-iommu at 02:00.1 on it and a second,
/// bypassing bridge; no virtio-mmio.
pub fn iommu_on_bus_2() -> Machine {
    let mut m = base(1);
    let iommu = bdf(2, 0, 1);
    m.iommu = Some(VirtioIommu::Pci { segment: 3, bdf: iommu });
    let mut root =
        pci_segment(3).unwrap().root(true, PciIommuScope::all_except(2, 9, pci_endpoint(3, 0), &[iommu]));
    root.bus_start = 2;
    root.bus_end = 9;
    m.pci_roots = vec![pci_segment(0).unwrap().root(true, PciIommuScope::Bypass), root];
    m
}

/// Restricted DMA pools as the machine model places and declares them: a virtio-mmio disk with
/// a pool of its own, next to a translated one; a PCI function of segment 0 with its own pool
/// (a child node of the bridge); host bridge `bounce` (segment 1) with one pool for its two
/// functions (memory-region on the bridge); an initrd below the pools.
pub fn dma_pools() -> Machine {
    use dmavm_machine::options::{parse_bridge, parse_disk, parse_iommu, parse_rng, MachineOptions};
    let options = MachineOptions {
        bridges: vec![parse_bridge("id=bounce,dma-pool=4M").unwrap()],
        devices: vec![
            parse_disk("path=a,dma-pool=4M").unwrap(),
            parse_disk("path=b").unwrap(),
            parse_disk("path=c,transport=pci,dma-pool=1M").unwrap(),
            parse_disk("path=d,transport=pci,bridge=bounce").unwrap(),
            parse_rng("transport=pci,bridge=bounce").unwrap(),
        ],
        iommu: Some(parse_iommu("transport=mmio").unwrap()),
        ..MachineOptions::new(2, 512 << 20)
    };
    let machine = dmavm_machine::Machine::new(&options, dmavm_machine::Arch::Aarch64).unwrap();
    let initrd = dmavm_machine::dt::initrd_region(machine.boot_top(), 8 << 20).unwrap();
    let mpidrs = [layout::kvm_mpidr(0), layout::kvm_mpidr(1)];
    machine.dt(&mpidrs, "console=ttyS0", Some(initrd)).unwrap()
}

/// Every test machine, named.
pub fn machines() -> Vec<(&'static str, Machine)> {
    vec![
        ("mmio-only", mmio_only()),
        ("pci-only", pci_only()),
        ("mixed-iommu-mmio", mixed_iommu_mmio()),
        ("mixed-iommu-pci", mixed_iommu_pci()),
        ("two-bridges", two_bridges()),
        ("all-bypass", all_bypass()),
        ("aff3-cpus", aff3_cpus()),
        ("iommu-on-bus-2", iommu_on_bus_2()),
        ("dma-pools", dma_pools()),
    ]
}

/// A fresh directory for the files of test `name`.
pub fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmavm-fdt").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove old work dir");
    }
    std::fs::create_dir_all(&dir).expect("create work dir");
    dir
}

/// The repository's build/tools, where resources/setup.sh installs test tools.
pub fn build_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/tools")
}
