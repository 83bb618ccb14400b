//! The arm64 guest-physical address map: `dmavm_fdt::layout`'s (QEMU `virt`
//! style, 40-bit IPA space), under the names the shared code (machine
//! model, PCI segments, guest memory) uses for the x86_64 map, so the same
//! machine model places devices at arm64 addresses.
//!
//! Boot-time placement (Documentation/arch/arm64/booting.rst): the kernel
//! `Image` at the start of RAM (2 MiB aligned) plus its `text_offset`; the
//! device tree blob in the 2 MiB region at the top of the first GiB of RAM
//! (or of RAM, if smaller); the initrd just below it. The kernel, the
//! initrd and the DTB then all sit in the first GiB, which satisfies the
//! booting rule that the initrd lie in a 1 GiB aligned window of at most
//! 32 GiB that also covers the kernel.

use std::ops::Range;

pub use dmavm_fdt::layout::{
    MAX_PCI_SEGMENTS, RAM_START, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START, VIRTIO_MMIO_STRIDE,
};

/// Smallest guest memory accepted on the command line. The kernel's own
/// size is checked when it is loaded.
pub const MIN_MEMORY: u64 = 16 << 20;
/// Most guest memory the address map has room for.
pub const MAX_MEMORY: u64 = dmavm_fdt::layout::RAM_MAX;
/// Size and alignment of the region the device tree blob gets.
pub const FDT_REGION: u64 = 2 << 20;
/// The window the kernel, initrd and DTB are kept in (booting.rst).
pub const BOOT_WINDOW: u64 = 1 << 30;

/// The RAM ranges (guest address, length) for `size` bytes of guest memory:
/// one, from [`RAM_START`].
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    vec![(RAM_START, size)]
}

/// Where one PCI segment's host bridge decodes (the same shape as the
/// x86_64 map's, for the shared PCI code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciSegmentWindows {
    /// The ECAM window, from bus 0's configuration space on.
    pub ecam: Range<u64>,
    /// The 32-bit BAR window.
    pub mem32: Range<u64>,
    /// The 64-bit BAR window.
    pub mem64: Range<u64>,
}

impl PciSegmentWindows {
    /// Buses the ECAM covers, from bus 0 (16 on every segment).
    pub fn buses(&self) -> u16 {
        // At most 16 MiB / 1 MiB.
        ((self.ecam.end - self.ecam.start) >> 20) as u16
    }
}

/// The windows of `segment` (the memory size does not move them on arm64);
/// `None` beyond [`MAX_PCI_SEGMENTS`].
pub fn pci_segment_windows(segment: u16, _memory: u64) -> Option<PciSegmentWindows> {
    let s = dmavm_fdt::layout::pci_segment(segment)?;
    let range = |r: dmavm_fdt::MemoryRange| r.base..r.base + r.size;
    Some(PciSegmentWindows {
        ecam: s.ecam_base..s.ecam_base + dmavm_fdt::layout::PCI_ECAM_SIZE,
        mem32: range(s.mem32),
        mem64: range(s.mem64),
    })
}

/// The `index`th virtio-mmio window's index from its base, as the machine
/// model placed it (`VIRTIO_MMIO_START + index * VIRTIO_MMIO_STRIDE`).
pub fn virtio_mmio_index(base: u64) -> Option<u32> {
    let offset = base.checked_sub(VIRTIO_MMIO_START)?;
    (offset % VIRTIO_MMIO_STRIDE == 0).then(|| u32::try_from(offset / VIRTIO_MMIO_STRIDE).ok()).flatten()
}

/// Where the device tree blob goes for `memory` bytes of RAM: the 2 MiB
/// region at the top of the boot window.
pub fn fdt_address(memory: u64) -> Option<u64> {
    let top = RAM_START + memory.min(BOOT_WINDOW);
    let addr = (top & !(FDT_REGION - 1)).checked_sub(FDT_REGION)?;
    (addr >= RAM_START).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_windows_follow_the_fdt_layout() {
        let s0 = pci_segment_windows(0, 1 << 30).unwrap();
        assert_eq!(s0.ecam, 0x3000_0000..0x3100_0000);
        assert_eq!(s0.buses(), 16);
        assert_eq!(s0.mem32, 0x1000_0000..0x2000_0000);
        assert_eq!(pci_segment_windows(1, 1 << 30).unwrap().ecam.start, 0x3100_0000);
        assert!(pci_segment_windows(MAX_PCI_SEGMENTS, 1 << 30).is_none());
    }

    #[test]
    fn mmio_index_and_fdt_place() {
        assert_eq!(virtio_mmio_index(VIRTIO_MMIO_START + 2 * VIRTIO_MMIO_STRIDE), Some(2));
        assert_eq!(virtio_mmio_index(VIRTIO_MMIO_START + 1), None);
        assert_eq!(virtio_mmio_index(0), None);
        assert_eq!(fdt_address(256 << 20), Some(RAM_START + (254 << 20)));
        assert_eq!(fdt_address(4 << 30), Some(RAM_START + (1022 << 20)));
        assert_eq!(fdt_address(1 << 20), None);
    }
}
