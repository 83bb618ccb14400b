//! Both architectures' guest-physical address maps, as values: where the
//! machine model's virtio-mmio windows and PCI segments decode, where RAM
//! goes. The model places devices by window index and PCI slot; these maps
//! turn a placement into addresses and interrupt numbers for the
//! architecture a machine is built for, whatever the host dmavm runs on.
//!
//! [`x86_64`] and [`aarch64`] hold each map's constants; the VM runner
//! takes its own architecture's from here and adds only what is private
//! to booting (boot page tables, the zero page, the device tree's place).

pub mod aarch64;
pub mod x86_64;

use std::ops::Range;

use crate::arch::Arch;
use crate::error::{fail, Result};

/// virtio-mmio windows a machine may have, on either architecture: the
/// x86_64 IOAPIC has a pin for 18 of them (pins 5-22; 0-4 are the legacy
/// ISA lines, 4 is COM1, and 23 is the hot-plug controller's), and the
/// arm64 map has room for more, but a machine has the same devices
/// whichever firmware describes it.
pub const VIRTIO_MMIO_WINDOWS: u32 = 18;
/// PCI segments (host bridges) at most, on either architecture: the DSDT
/// names them PCI0..PCIF.
pub const MAX_PCI_SEGMENTS: u16 = 16;
/// Smallest guest memory accepted: room for the boot structures, a test
/// payload and its stacks with margin.
pub const MIN_MEMORY: u64 = 16 << 20;

/// One virtio-mmio window of an architecture's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    /// The register window's base.
    pub base: u64,
    /// The register window's size (virtio 1.3, 4.2.2: registers up to
    /// 0x100, device configuration after).
    pub size: u64,
    /// Its interrupt: the IOAPIC pin (GSI) on x86_64, the SPI number on
    /// aarch64.
    pub interrupt: u32,
}

/// Where one PCI segment's host bridge decodes.
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
    /// Buses the ECAM covers, from bus 0 (1 MiB of configuration space per
    /// bus: PCIe 6.0, 7.2.2).
    pub fn buses(&self) -> u16 {
        // At most 256 MiB / 1 MiB.
        ((self.ecam.end - self.ecam.start) >> 20) as u16
    }
}

/// Checks guest memory against the map's minimum, page granularity and
/// the host's RAM (`host`, in bytes), as `run` and `describe` both do.
pub fn check_memory(memory: u64, host: u64) -> Result<()> {
    let mib = |b: u64| format!("{} MiB", b >> 20);
    let text = |b: u64| if b % (1 << 20) == 0 { mib(b) } else { format!("{b} bytes") };
    if memory < MIN_MEMORY {
        fail!(Layout, "--memory {} is too small: dmavm needs at least {}", text(memory), mib(MIN_MEMORY));
    }
    if memory % 4096 != 0 {
        fail!(Layout, "--memory {} is not a whole number of 4 KiB pages", text(memory));
    }
    if memory > host {
        fail!(Layout, "--memory {} is more than this host's {} of RAM", mib(memory), mib(host));
    }
    Ok(())
}

impl Arch {
    /// The `index`th virtio-mmio window; `None` from
    /// [`VIRTIO_MMIO_WINDOWS`] on.
    pub fn virtio_mmio_window(self, index: u32) -> Option<MmioWindow> {
        if index >= VIRTIO_MMIO_WINDOWS {
            return None;
        }
        let (start, stride, size, first_interrupt) = match self {
            Arch::X86_64 => (
                x86_64::VIRTIO_MMIO_START,
                x86_64::VIRTIO_MMIO_STRIDE,
                x86_64::VIRTIO_MMIO_SIZE,
                x86_64::FIRST_VIRTIO_MMIO_GSI,
            ),
            Arch::Aarch64 => (
                aarch64::VIRTIO_MMIO_START,
                aarch64::VIRTIO_MMIO_STRIDE,
                aarch64::VIRTIO_MMIO_SIZE,
                aarch64::VIRTIO_MMIO_FIRST_SPI,
            ),
        };
        Some(MmioWindow { base: start + u64::from(index) * stride, size, interrupt: first_interrupt + index })
    }

    /// Which virtio-mmio window starts at `base` (a device's `addr=`), if
    /// one does.
    pub fn virtio_mmio_index(self, base: u64) -> Option<u32> {
        let first = self.virtio_mmio_window(0)?;
        let stride = self.virtio_mmio_window(1)?.base - first.base;
        let offset = base.checked_sub(first.base)?;
        let index = u32::try_from(offset / stride).ok()?;
        (offset % stride == 0 && index < VIRTIO_MMIO_WINDOWS).then_some(index)
    }

    /// The windows of PCI `segment` for `memory` bytes of RAM; `None` from
    /// [`MAX_PCI_SEGMENTS`] on.
    pub fn pci_segment_windows(self, segment: u16, memory: u64) -> Option<PciSegmentWindows> {
        match self {
            Arch::X86_64 => x86_64::pci_segment_windows(segment, memory),
            Arch::Aarch64 => aarch64::pci_segment(segment).map(|s| PciSegmentWindows {
                ecam: s.ecam_base..s.ecam_base + aarch64::PCI_ECAM_SIZE,
                mem32: s.mem32.base..s.mem32.base + s.mem32.size,
                mem64: s.mem64.base..s.mem64.base + s.mem64.size,
            }),
        }
    }

    /// The RAM ranges (guest address, length) for `memory` bytes of RAM.
    pub fn ram_ranges(self, memory: u64) -> Vec<(u64, u64)> {
        match self {
            Arch::X86_64 => x86_64::ram_ranges(memory),
            Arch::Aarch64 => vec![(aarch64::RAM_START, memory)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_both_maps() {
        let x = Arch::X86_64.virtio_mmio_window(2).unwrap();
        assert_eq!((x.base, x.size, x.interrupt), (0xd000_2000, 0x200, 7));
        let a = Arch::Aarch64.virtio_mmio_window(2).unwrap();
        assert_eq!((a.base, a.size, a.interrupt), (0x0a00_2000, 0x200, 18));
        for arch in [Arch::X86_64, Arch::Aarch64] {
            assert!(arch.virtio_mmio_window(VIRTIO_MMIO_WINDOWS).is_none());
            let last = arch.virtio_mmio_window(VIRTIO_MMIO_WINDOWS - 1).unwrap();
            assert_eq!(arch.virtio_mmio_index(last.base), Some(VIRTIO_MMIO_WINDOWS - 1));
            assert_eq!(arch.virtio_mmio_index(last.base + 0x800), None);
            assert_eq!(arch.virtio_mmio_index(0), None);
            assert!(arch.pci_segment_windows(MAX_PCI_SEGMENTS, 1 << 30).is_none());
        }
        // The x86_64 interrupt of the last window is the IOAPIC's last pin.
        assert_eq!(Arch::X86_64.virtio_mmio_window(VIRTIO_MMIO_WINDOWS - 1).unwrap().interrupt, 22);
    }

    #[test]
    fn memory_limits() {
        let host = 8u64 << 30;
        assert!(check_memory(16 << 20, host).is_ok());
        assert!(check_memory(8 << 30, host).is_ok());
        let small = check_memory(8 << 20, host).unwrap_err().to_string();
        assert!(small.contains("too small"), "{small}");
        let big = check_memory(9 << 30, host).unwrap_err().to_string();
        assert!(big.contains("more than this host"), "{big}");
        assert!(check_memory((16 << 20) + 1, host).is_err());
    }

    #[test]
    fn segment_windows_of_both_maps() {
        let x = Arch::X86_64.pci_segment_windows(0, 1 << 30).unwrap();
        assert_eq!((x.ecam.start, x.buses()), (0xe000_0000, 1));
        let a = Arch::Aarch64.pci_segment_windows(0, 1 << 30).unwrap();
        assert_eq!(a.ecam, 0x3000_0000..0x3100_0000);
        assert_eq!(a.buses(), 16);
        assert_eq!(a.mem32, 0x1000_0000..0x2000_0000);
        assert_eq!(Arch::Aarch64.pci_segment_windows(1, 1 << 30).unwrap().ecam.start, 0x3100_0000);
    }
}
