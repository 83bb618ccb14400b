//! A small arm64 `virt`-style description for the encoder's own unit tests
//! (the product's address map lives in the machine model).

use crate::description::{
    ArchTimer, Chosen, GicV3, Machine, MemoryRange, Ns16550a, PciIommuScope, PciRoot, Uart, VirtioMmioDevice,
};

/// A machine of `cpus` vCPUs and `ram` bytes of RAM at 1 GiB with a GICv3
/// and ITS, the timer and a 16550A, no devices.
pub fn virt(cpus: u32, ram: u64, bootargs: &str) -> Machine {
    Machine {
        model: "test virt".into(),
        cpus: (0..u64::from(cpus)).collect(),
        memory: vec![MemoryRange::new(0x4000_0000, ram)],
        gic: GicV3 {
            distributor: MemoryRange::new(0x0800_0000, 0x1_0000),
            redistributors: MemoryRange::new(0x080a_0000, u64::from(cpus) * 0x2_0000),
            its: Some(MemoryRange::new(0x0808_0000, 0x2_0000)),
        },
        timer: ArchTimer::default(),
        uart: Uart::Ns16550a(Ns16550a {
            region: MemoryRange::new(0x0900_0000, 0x1000),
            spi: 1,
            clock_hz: 1_843_200,
        }),
        chosen: Chosen { bootargs: bootargs.into(), initrd: None },
        virtio_mmio: Vec::new(),
        pci_roots: Vec::new(),
        iommu: None,
        dma_pools: Vec::new(),
    }
}

/// The `index`th virtio-mmio device: a 0x200 window every 4 KiB from
/// 0x0a00_0000, SPI 16 + index.
pub fn virtio_mmio_device(
    index: u32,
    coherent: bool,
    iommu_endpoint: Option<u32>,
) -> Option<VirtioMmioDevice> {
    let region = MemoryRange::new(0x0a00_0000 + u64::from(index) * 0x1000, 0x200);
    Some(VirtioMmioDevice { region, spi: 16 + index, coherent, iommu_endpoint, dma_pool: None })
}

/// Where segment `segment`'s host bridge decodes: 16 buses of ECAM each.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    segment: u16,
}

impl Segment {
    /// Its root with `coherent` and `iommu`.
    pub fn root(&self, coherent: bool, iommu: PciIommuScope) -> PciRoot {
        let s = u64::from(self.segment);
        PciRoot {
            segment: self.segment,
            bus_start: 0,
            bus_end: 15,
            ecam_base: 0x3000_0000 + s * (16 << 20),
            mem32: MemoryRange::new(0x1000_0000 + s * (16 << 20), 16 << 20),
            mem64: Some(MemoryRange::new(0x80_0000_0000 + s * (32 << 30), 32 << 30)),
            io: None,
            its_device_base: u32::from(self.segment) << 12,
            coherent,
            iommu,
            functions: Vec::new(),
        }
    }
}

/// Segment `segment`.
pub fn pci_segment(segment: u16) -> Option<Segment> {
    Some(Segment { segment })
}
