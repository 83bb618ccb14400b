//! The guest's physical memory map (e820), for the zero page and for PVH.

use crate::arch::layout::{ram_ranges, EBDA_START, HIGH_MEMORY_START};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// The map for `memory` bytes of RAM: conventional memory below the EBDA,
/// the EBDA and BIOS area (where the ACPI tables sit) reserved, then RAM
/// from 1 MiB up to the MMIO hole and from 4 GiB on, plus the `reserved`
/// ranges: every PCI segment's ECAM window, which Linux checks before
/// trusting the MCFG (the DSDT's PNP0C02 device says the same for kernels
/// that look there; PCI Firmware 3.3, 4.1.2). One unreserved ECAM and
/// Linux drops them all (`pci_mmcfg_reject_broken()`). The BAR windows
/// must stay out of the map: Linux cuts reserved ranges out of a host
/// bridge's windows.
pub fn memory_map(memory: u64, reserved: &[(u64, u64)]) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry { addr: 0, size: EBDA_START, kind: E820_RAM },
        E820Entry { addr: EBDA_START, size: HIGH_MEMORY_START - EBDA_START, kind: E820_RESERVED },
    ];
    for (base, len) in ram_ranges(memory) {
        let (start, end) = (base.max(HIGH_MEMORY_START), base + len);
        if end > start {
            map.push(E820Entry { addr: start, size: end - start, kind: E820_RAM });
        }
    }
    for &(addr, size) in reserved {
        map.push(E820Entry { addr, size, kind: E820_RESERVED });
    }
    map.sort_by_key(|e| e.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_covers_ram_and_skips_the_hole() {
        let ecam = [(0xe000_0000, 0x1000_0000), (0xf000_0000, 0x10_0000), (0xf010_0000, 0x10_0000)];
        let map = memory_map(5 << 30, &ecam);
        let ram: u64 = map.iter().filter(|e| e.kind == E820_RAM).map(|e| e.size).sum();
        // Only the EBDA/BIOS area is taken out of the 5 GiB.
        assert_eq!(ram, (5 << 30) - (0x10_0000 - 0x9_fc00));
        assert_eq!(map[2], E820Entry { addr: 0x10_0000, size: (3 << 30) - 0x10_0000, kind: E820_RAM });
        assert_eq!(map[3], E820Entry { addr: 0xe000_0000, size: 0x1000_0000, kind: E820_RESERVED });
        assert_eq!(map[4], E820Entry { addr: 0xf000_0000, size: 0x10_0000, kind: E820_RESERVED });
        assert_eq!(map[5], E820Entry { addr: 0xf010_0000, size: 0x10_0000, kind: E820_RESERVED });
        assert_eq!(map[6], E820Entry { addr: 4 << 30, size: 2 << 30, kind: E820_RAM });
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "overlap in {map:?}");
        }
    }
}
