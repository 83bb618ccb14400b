//! The guest-physical address map of dmavm's arm64 `virt`-style machine. QEMU `virt` style below 1 GiB, so the numbers look
//! familiar; everything fits a 40-bit IPA space (KVM's default VM type, 1 TiB).
//!
//! ```text
//! 0x00_0000_0000  reserved (128 MiB, kept free for firmware or flash)
//! 0x00_0800_0000  GICv3 distributor                64 KiB
//! 0x00_0808_0000  GICv3 ITS                        128 KiB
//! 0x00_080a_0000  GICv3 redistributors             128 KiB per vCPU, up to 0x0900_0000 (123 vCPUs)
//! 0x00_0900_0000  UART (16550A or PL011)           4 KiB, SPI 1
//! 0x00_0a00_0000  virtio-mmio windows              0x200 each, one per 4 KiB, 32 of them, SPI 16 + n
//! 0x00_1000_0000  PCI segment 0's 32-bit window    256 MiB
//! 0x00_2000_0000  32-bit windows of segments 1-15  16 MiB each
//! 0x00_3000_0000  ECAM of segments 0-15            16 MiB (16 buses) each
//! 0x00_4000_0000  RAM                              up to 511 GiB
//! 0x80_0000_0000  64-bit windows of segments 0-15  32 GiB each, up to 1 TiB
//! ```
//!
//! PCI MSIs go through the ITS. KVM's ITS implements 16-bit DeviceIDs, so the 16 segments share
//! that space: segment `s` has DeviceIDs `s << 12` up (16 buses x 256 functions), which is what
//! [`PciSegmentLayout::its_device_base`] gives and the VMM must use when it signals an MSI.
//!
//! The device tree blob itself goes into RAM: 8-byte aligned, at most [`dmavm_fdt::FDT_MAX_SIZE`] bytes, in
//! a 2 MiB region of its own (Documentation/arch/arm64/booting.rst), e.g. the last 2 MiB of RAM.

use dmavm_fdt::{
    ArchTimer, Chosen, GicV3, Machine, MemoryRange, Ns16550a, PciIommuScope, PciRoot, Uart, VirtioMmioDevice,
};

/// The GICv3 distributor (GICD).
pub const GIC_DIST: MemoryRange = MemoryRange::new(0x0800_0000, 0x1_0000);
/// The GICv3 ITS: control frame and translation frame, 64 KiB each.
pub const GIC_ITS: MemoryRange = MemoryRange::new(0x0808_0000, 0x2_0000);
/// Start of the redistributor region.
pub const GIC_REDIST_START: u64 = 0x080a_0000;
/// Size of one vCPU's redistributor (RD_base and SGI_base frames).
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 0x2_0000;
/// End of the room for redistributors (exclusive): the UART follows.
pub const GIC_REDIST_END: u64 = 0x0900_0000;
/// vCPUs whose redistributors fit below [`GIC_REDIST_END`].
pub const MAX_VCPUS: usize = ((GIC_REDIST_END - GIC_REDIST_START) / GIC_REDIST_SIZE_PER_CPU) as usize;

/// The UART's register window.
pub const UART: MemoryRange = MemoryRange::new(0x0900_0000, 0x1000);
/// The UART's SPI (INTID 33).
pub const UART_SPI: u32 = 1;
/// The fixed clock feeding a PL011, 24 MHz as on QEMU's `virt`.
pub const UART_CLOCK_HZ: u32 = 24_000_000;
/// The input clock of the 16550A, the classic 1.8432 MHz (115200 baud with divisor 1).
pub const NS16550A_CLOCK_HZ: u32 = 1_843_200;

/// First virtio-mmio window.
pub const VIRTIO_MMIO_START: u64 = 0x0a00_0000;
/// Distance between virtio-mmio windows (a page each, so no window shares a page).
pub const VIRTIO_MMIO_STRIDE: u64 = 0x1000;
/// Size of one virtio-mmio register window (virtio 1.2 section 4.2.2: registers up to 0x100,
/// device configuration after).
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
/// Number of virtio-mmio windows.
pub const VIRTIO_MMIO_COUNT: u32 = 32;
/// SPI of the first virtio-mmio window; window `n` has SPI `VIRTIO_MMIO_FIRST_SPI + n`.
pub const VIRTIO_MMIO_FIRST_SPI: u32 = 16;

/// PCI segments (host bridges) at most.
pub const MAX_PCI_SEGMENTS: u16 = super::MAX_PCI_SEGMENTS;
/// Segment 0's 32-bit BAR window.
pub const PCI_MEM32: MemoryRange = MemoryRange::new(0x1000_0000, 0x1000_0000);
/// 32-bit windows of segments 1 and up, one after the other.
pub const PCI_SEGMENT_MEM32_START: u64 = 0x2000_0000;
/// Size of the 32-bit window of a segment other than 0.
pub const PCI_SEGMENT_MEM32_SIZE: u64 = 16 << 20;
/// ECAM of segment 0; segment `s` at `PCI_ECAM_START + s * PCI_ECAM_SIZE`.
pub const PCI_ECAM_START: u64 = 0x3000_0000;
/// ECAM size of every segment: 16 buses of 1 MiB.
pub const PCI_ECAM_SIZE: u64 = 16 << 20;
/// Buses per segment, 0 to 15.
pub const PCI_BUSES: u8 = 16;
/// Segment 0's 64-bit window; segment `s` at `PCI_MEM64_START + s * PCI_MEM64_SIZE`.
pub const PCI_MEM64_START: u64 = 0x80_0000_0000;
/// Size of every segment's 64-bit window.
pub const PCI_MEM64_SIZE: u64 = 32 << 30;

/// Where RAM starts.
pub const RAM_START: u64 = 0x4000_0000;
/// Most RAM there is room for: up to the 64-bit PCI windows.
pub const RAM_MAX: u64 = PCI_MEM64_START - RAM_START;

/// Size and alignment of the device tree blob's region: booting.rst wants
/// the blob inside one 2 MiB region, and it may be that large
/// ([`dmavm_fdt::FDT_MAX_SIZE`]).
pub const FDT_REGION: u64 = dmavm_fdt::FDT_MAX_SIZE as u64;
/// The window the kernel, the initrd and the blob are kept in: the first
/// GiB of RAM. Documentation/arch/arm64/booting.rst wants the initrd in a
/// 1 GiB aligned window of at most 32 GiB that also covers the kernel,
/// which is loaded at the start of RAM.
pub const BOOT_WINDOW: u64 = 1 << 30;

// The fixed regions follow one another without overlap, for every segment there can be.
const _: () = assert!(
    GIC_DIST.base + GIC_DIST.size <= GIC_ITS.base
        && GIC_ITS.base + GIC_ITS.size <= GIC_REDIST_START
        && GIC_REDIST_END <= UART.base
        && UART.base + UART.size <= VIRTIO_MMIO_START
        && VIRTIO_MMIO_START + VIRTIO_MMIO_COUNT as u64 * VIRTIO_MMIO_STRIDE <= PCI_MEM32.base
        && PCI_MEM32.base + PCI_MEM32.size <= PCI_SEGMENT_MEM32_START
        && PCI_SEGMENT_MEM32_START + (MAX_PCI_SEGMENTS as u64 - 1) * PCI_SEGMENT_MEM32_SIZE <= PCI_ECAM_START
        && PCI_ECAM_START + MAX_PCI_SEGMENTS as u64 * PCI_ECAM_SIZE <= RAM_START
        && PCI_MEM64_START + MAX_PCI_SEGMENTS as u64 * PCI_MEM64_SIZE <= 1 << 40
        && (MAX_PCI_SEGMENTS as u32) << 12 <= 1 << 16
);

/// KVM's default MPIDR_EL1 for vCPU `index` (`reset_mpidr()` in arch/arm64/kvm/sys_regs.c):
/// Aff0 = bits 3:0 of the index, Aff1 = bits 11:4, Aff2 = bits 19:12.
pub fn kvm_mpidr(index: u32) -> u64 {
    let i = u64::from(index);
    (i & 0xf) | ((i >> 4) & 0xff) << 8 | ((i >> 12) & 0xff) << 16
}

/// The GIC of this layout for `cpus` vCPUs (redistributors for exactly that many), with its ITS.
pub fn gic(cpus: usize) -> GicV3 {
    GicV3 {
        distributor: GIC_DIST,
        redistributors: MemoryRange::new(GIC_REDIST_START, cpus as u64 * GIC_REDIST_SIZE_PER_CPU),
        its: Some(GIC_ITS),
    }
}

/// The `index`th virtio-mmio window and its SPI; `None` past [`VIRTIO_MMIO_COUNT`].
pub fn virtio_mmio_slot(index: u32) -> Option<(MemoryRange, u32)> {
    (index < VIRTIO_MMIO_COUNT).then(|| {
        let base = VIRTIO_MMIO_START + u64::from(index) * VIRTIO_MMIO_STRIDE;
        (MemoryRange::new(base, VIRTIO_MMIO_SIZE), VIRTIO_MMIO_FIRST_SPI + index)
    })
}

/// The `index`th virtio-mmio device of this layout; `None` past [`VIRTIO_MMIO_COUNT`].
pub fn virtio_mmio_device(
    index: u32,
    coherent: bool,
    iommu_endpoint: Option<u32>,
) -> Option<VirtioMmioDevice> {
    virtio_mmio_slot(index).map(|(region, spi)| VirtioMmioDevice {
        region,
        spi,
        coherent,
        iommu_endpoint,
        dma_pool: None,
    })
}

/// Where one PCI segment's host bridge decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciSegmentLayout {
    /// The segment.
    pub segment: u16,
    /// Address of bus 0's configuration space; buses 0 to [`PCI_BUSES`] - 1.
    pub ecam_base: u64,
    /// The 32-bit BAR window.
    pub mem32: MemoryRange,
    /// The 64-bit BAR window.
    pub mem64: MemoryRange,
    /// ITS DeviceID of the first requester ID, 00:00.0 (`segment << 12`).
    pub its_device_base: u32,
}

impl PciSegmentLayout {
    /// A host bridge at these windows, buses 0-15, no I/O window.
    pub fn root(&self, coherent: bool, iommu: PciIommuScope) -> PciRoot {
        PciRoot {
            segment: self.segment,
            bus_start: 0,
            bus_end: PCI_BUSES - 1,
            ecam_base: self.ecam_base,
            mem32: self.mem32,
            mem64: Some(self.mem64),
            io: None,
            its_device_base: self.its_device_base,
            coherent,
            iommu,
            functions: Vec::new(),
        }
    }
}

/// The windows of `segment`; `None` from [`MAX_PCI_SEGMENTS`] on.
pub fn pci_segment(segment: u16) -> Option<PciSegmentLayout> {
    if segment >= MAX_PCI_SEGMENTS {
        return None;
    }
    let s = u64::from(segment);
    let mem32 = if segment == 0 {
        PCI_MEM32
    } else {
        MemoryRange::new(PCI_SEGMENT_MEM32_START + (s - 1) * PCI_SEGMENT_MEM32_SIZE, PCI_SEGMENT_MEM32_SIZE)
    };
    Some(PciSegmentLayout {
        segment,
        ecam_base: PCI_ECAM_START + s * PCI_ECAM_SIZE,
        mem32,
        mem64: MemoryRange::new(PCI_MEM64_START + s * PCI_MEM64_SIZE, PCI_MEM64_SIZE),
        its_device_base: u32::from(segment) << 12,
    })
}

/// A machine of this layout with `cpus` vCPUs (KVM's default MPIDRs), `ram` bytes of RAM
/// from [`RAM_START`], the GIC with its ITS, the timer, the UART (the 16550A dmavm's arm64
/// back end emulates, at [`UART`]) and the command line `bootargs`; no initrd, devices, host
/// bridges or IOMMU, which the caller adds.
pub fn virt_machine(cpus: u32, ram: u64, bootargs: &str) -> Machine {
    Machine {
        model: "dmavm arm64 virt".into(),
        cpus: (0..cpus).map(kvm_mpidr).collect(),
        memory: vec![MemoryRange::new(RAM_START, ram)],
        gic: gic(cpus as usize),
        timer: ArchTimer::default(),
        uart: Uart::Ns16550a(Ns16550a { region: UART, spi: UART_SPI, clock_hz: NS16550A_CLOCK_HZ }),
        chosen: Chosen { bootargs: bootargs.into(), initrd: None },
        virtio_mmio: Vec::new(),
        pci_roots: Vec::new(),
        iommu: None,
        dma_pools: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_mpidrs() {
        assert_eq!(kvm_mpidr(0), 0);
        assert_eq!(kvm_mpidr(15), 0xf);
        assert_eq!(kvm_mpidr(16), 0x100);
        assert_eq!(kvm_mpidr(0x1234), 0x1_2304);
    }

    #[test]
    fn segments_and_slots() {
        assert_eq!(MAX_VCPUS, 123);
        let s0 = pci_segment(0).unwrap();
        assert_eq!((s0.ecam_base, s0.mem32, s0.its_device_base), (0x3000_0000, PCI_MEM32, 0));
        let s15 = pci_segment(15).unwrap();
        assert_eq!(s15.ecam_base + PCI_ECAM_SIZE, RAM_START);
        assert_eq!(s15.mem64.base + s15.mem64.size, 1 << 40);
        assert_eq!(s15.its_device_base, 0xf000);
        assert!(pci_segment(16).is_none());
        assert_eq!(virtio_mmio_slot(1), Some((MemoryRange::new(0x0a00_1000, 0x200), 17)));
        assert!(virtio_mmio_slot(32).is_none());
    }
}
