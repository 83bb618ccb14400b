//! The x86_64 guest-physical address map.
//!
//! RAM starts at 0. Below 4 GiB it stops at [`MMIO_HOLE_START`]: the last
//! gigabyte below 4 GiB is the 32-bit MMIO hole (PCI windows and ECAMs,
//! the virtio-mmio windows, the IOAPIC, the VT-d units, the local APICs).
//! RAM beyond what fits below the hole continues at 4 GiB.
//!
//! In the hole: segment 0's 32-bit BAR window (0xc0000000), the
//! virtio-mmio windows (0xd0000000), the 32-bit windows of PCI segments
//! 1-15 (0xd1000000, 16 MiB each), segment 0's ECAM (0xe0000000, one
//! bus), the ECAMs of segments 1-15 (0xf0000000, one bus each), the
//! hot-plug controller's registers (0xfeb00000), the IOAPIC (0xfec00000), the register windows of the VT-d units of a
//! `type=vtd` machine (0xfed90000, one page per unit), the local APICs
//! (0xfee00000). Above RAM: segment 0's 64-bit window, then
//! those of segments 1-15.

use std::ops::Range;

use super::{PciSegmentWindows, MAX_PCI_SEGMENTS, VIRTIO_MMIO_WINDOWS};

/// The most vCPUs: APIC ID = vCPU index, and the MADT and the IOAPIC's
/// destinations hold 8-bit xAPIC IDs of which 255 is the broadcast ID.
pub const MAX_VCPUS: u32 = 254;
/// Start of the 32-bit MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// First address above 4 GiB, where high RAM starts.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// The 32-bit memory window (BARs) of PCI segment 0's host bridge.
pub const PCI_MEM32_START: u64 = 0xc000_0000;
/// End of segment 0's 32-bit window (exclusive): virtio-mmio windows follow.
pub const PCI_MEM32_END: u64 = 0xd000_0000;
/// Segment 0's ECAM.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
/// Size of segment 0's ECAM window: bus 0 only, 1 MiB (PCIe 6.0, 7.2.2:
/// 32 devices x 8 functions x 4 KiB). Every function of a dmavm machine
/// sits on its segment's root bus, and the buses the MCFG declares are
/// the buses x86 Linux probes: its peer-bridge fixup
/// (`pcibios_fixup_peer_bridges()`, arch/x86/pci/legacy.c) reads the
/// vendor ID of all 32 slots of every bus up to the last one, through
/// ports 0xcf8/0xcfc, two exits each. With 256 buses that was some 16,000
/// exits per boot; with one bus it is none.
pub const PCI_ECAM_SIZE: u64 = 1 << 20;

/// ECAM of segments 1 and up, above segment 0's 256 MiB slot: bus 0
/// only, 1 MiB each.
pub const PCI_SEGMENT_ECAM_START: u64 = 0xf000_0000;
/// ECAM size of a segment other than 0 (one bus).
pub const PCI_SEGMENT_ECAM_SIZE: u64 = 1 << 20;
/// 32-bit BAR windows of segments 1 and up, one after the other between
/// the virtio-mmio windows and segment 0's ECAM.
pub const PCI_SEGMENT_MEM32_START: u64 = VIRTIO_MMIO_END;
/// Size of the 32-bit window of a segment other than 0. virtio-pci BARs
/// are 64-bit and go to the 64-bit window; this one is for what a guest
/// moves below 4 GiB.
pub const PCI_SEGMENT_MEM32_SIZE: u64 = 16 << 20;
/// Size of the 64-bit window of a segment other than 0 (after segment 0's).
pub const PCI_SEGMENT_MEM64_SIZE: u64 = 4 << 30;

// The windows in the 32-bit hole do not overlap one another, for every
// segment there can be.
const _: () = assert!(
    MMIO_HOLE_START <= PCI_MEM32_START
        && PCI_MEM32_END <= VIRTIO_MMIO_START
        && PCI_SEGMENT_MEM32_START + (MAX_PCI_SEGMENTS as u64 - 1) * PCI_SEGMENT_MEM32_SIZE <= PCI_ECAM_START
        && PCI_SEGMENT_ECAM_START + (MAX_PCI_SEGMENTS as u64 - 1) * PCI_SEGMENT_ECAM_SIZE <= IOAPIC_ADDR
);

/// Size of segment 0's 64-bit BAR window above RAM.
pub const PCI_MEM64_SIZE: u64 = 32 << 30;

/// Segment 0's 64-bit BAR window: from the first 1 GiB boundary above the
/// end of RAM (and above 4 GiB).
pub fn pci_mem64_window(memory: u64) -> Range<u64> {
    let ram_end = ram_ranges(memory).last().map_or(0, |(base, len)| base + len).max(HIGH_RAM_START);
    let start = ram_end.next_multiple_of(1 << 30);
    start..start + PCI_MEM64_SIZE
}

/// The windows of `segment` for `memory` bytes of RAM; `None` beyond
/// [`MAX_PCI_SEGMENTS`]. Every segment has bus 0 only; segment 0 keeps the
/// single-bridge machine's windows, segments 1-15 have their ECAMs from
/// 0xf0000000 and their windows in free space of the hole and after
/// segment 0's 64-bit window, so that adding a bridge never moves another.
pub fn pci_segment_windows(segment: u16, memory: u64) -> Option<PciSegmentWindows> {
    if segment >= MAX_PCI_SEGMENTS {
        return None;
    }
    let mem64 = pci_mem64_window(memory);
    if segment == 0 {
        return Some(PciSegmentWindows {
            ecam: PCI_ECAM_START..PCI_ECAM_START + PCI_ECAM_SIZE,
            mem32: PCI_MEM32_START..PCI_MEM32_END,
            mem64,
        });
    }
    let n = u64::from(segment - 1);
    let ecam = PCI_SEGMENT_ECAM_START + n * PCI_SEGMENT_ECAM_SIZE;
    let mem32 = PCI_SEGMENT_MEM32_START + n * PCI_SEGMENT_MEM32_SIZE;
    let mem64 = mem64.end + n * PCI_SEGMENT_MEM64_SIZE;
    Some(PciSegmentWindows {
        ecam: ecam..ecam + PCI_SEGMENT_ECAM_SIZE,
        mem32: mem32..mem32 + PCI_SEGMENT_MEM32_SIZE,
        mem64: mem64..mem64 + PCI_SEGMENT_MEM64_SIZE,
    })
}

/// First virtio-mmio register window; one every [`VIRTIO_MMIO_STRIDE`].
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Distance between virtio-mmio windows (a page each, so a window never
/// shares a page with another device).
pub const VIRTIO_MMIO_STRIDE: u64 = 0x1000;
/// Size of one virtio-mmio register window (virtio 1.2, 4.2.2: registers
/// up to 0x100, device configuration after).
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
/// End of the room for virtio-mmio windows (exclusive): 4096 windows,
/// far more than there are IOAPIC pins for.
pub const VIRTIO_MMIO_END: u64 = 0xd100_0000;
/// The IOAPIC pin of virtio-mmio window 0; window `n` has pin `n` above
/// (0-4 are the legacy ISA lines, 4 is COM1).
pub const FIRST_VIRTIO_MMIO_GSI: u32 = 5;
/// The IOAPIC pin of the hot-plug controller (the Generic Event Device
/// that signals the power button and PCI slot events).
pub const HOTPLUG_GSI: u32 = 23;
// Every window has a pin of the IOAPIC's 24, and none is the controller's.
const _: () = assert!(FIRST_VIRTIO_MMIO_GSI + VIRTIO_MMIO_WINDOWS <= HOTPLUG_GSI && HOTPLUG_GSI < 24);

/// The IOAPIC's register window (82093AA default).
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Size of the IOAPIC's register window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// The register window of the first VT-d remapping hardware unit; unit
/// `n` is at `VTD_REGISTERS_START + n * VTD_REGISTERS_SIZE`. Where Intel
/// platforms put theirs, between the IOAPIC and the local APICs.
pub const VTD_REGISTERS_START: u64 = 0xfed9_0000;
/// Size of one VT-d unit's register window: one page (the DRHD's Size
/// field 0, VT-d 4.1 section 8.3), which holds every register including the
/// fault-recording and IOTLB registers the capability registers place.
pub const VTD_REGISTERS_SIZE: u64 = 0x1000;
/// The hot-plug controller's register block: a page of its own, below the
/// IOAPIC, outside every PCI window.
pub const HOTPLUG_REGISTERS_START: u64 = 0xfeb0_0000;
/// The page the hot-plug controller's registers occupy.
pub const HOTPLUG_REGISTERS_SIZE: u64 = 0x1000;
const _: () = assert!(HOTPLUG_REGISTERS_START + HOTPLUG_REGISTERS_SIZE <= IOAPIC_ADDR);
/// The local APICs' window, which no device window may reach.
pub const LOCAL_APIC_ADDR: u64 = 0xfee0_0000;
// One unit per PCI segment fits between the IOAPIC and the local APICs.
const _: () = assert!(
    IOAPIC_ADDR + IOAPIC_SIZE <= VTD_REGISTERS_START
        && VTD_REGISTERS_START + MAX_PCI_SEGMENTS as u64 * VTD_REGISTERS_SIZE <= LOCAL_APIC_ADDR
);

/// ACPI tables: RSDP first, in the BIOS area where Linux also scans for it.
pub const ACPI_START: u64 = 0xe_0000;
/// End of the ACPI area.
pub const ACPI_END: u64 = 0xf_0000;

/// The RAM ranges (guest address, length) for `size` bytes of guest memory.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_HOLE_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_HOLE_START), (HIGH_RAM_START, size - MMIO_HOLE_START)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_hole() {
        assert_eq!(ram_ranges(512 << 20), vec![(0, 512 << 20)]);
        assert_eq!(ram_ranges(3 << 30), vec![(0, 3 << 30)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
        let total: u64 = ram_ranges(5 << 30).iter().map(|r| r.1).sum();
        assert_eq!(total, 5 << 30);
    }

    #[test]
    fn pci_windows_clear_ram_and_each_other() {
        assert_eq!(pci_mem64_window(512 << 20).start, 4 << 30);
        assert_eq!(pci_mem64_window(5 << 30).start, 6 << 30); // RAM ends at 6 GiB
        assert_eq!(pci_mem64_window((5 << 30) + 1).start, 7 << 30);
    }

    #[test]
    fn segment_windows_clear_one_another() {
        let s0 = pci_segment_windows(0, 1 << 30).unwrap();
        assert_eq!(s0.ecam, 0xe000_0000..0xe010_0000);
        assert_eq!(s0.buses(), 1);
        assert_eq!(s0.mem64, 4 << 30..36 << 30);
        let s1 = pci_segment_windows(1, 1 << 30).unwrap();
        assert_eq!(s1.ecam, 0xf000_0000..0xf010_0000);
        assert_eq!(s1.buses(), 1);
        assert_eq!(s1.mem32, 0xd100_0000..0xd200_0000);
        assert_eq!(s1.mem64, 36 << 30..40 << 30);
        let all: Vec<_> = (0..MAX_PCI_SEGMENTS).map(|s| pci_segment_windows(s, 5 << 30).unwrap()).collect();
        let mut ranges: Vec<Range<u64>> =
            all.iter().flat_map(|w| [w.ecam.clone(), w.mem32.clone(), w.mem64.clone()]).collect();
        ranges.push(VIRTIO_MMIO_START..VIRTIO_MMIO_END);
        ranges.push(IOAPIC_ADDR..IOAPIC_ADDR + IOAPIC_SIZE);
        ranges.push(VTD_REGISTERS_START..VTD_REGISTERS_START + MAX_PCI_SEGMENTS as u64 * VTD_REGISTERS_SIZE);
        ranges.push(LOCAL_APIC_ADDR..LOCAL_APIC_ADDR + 0x10_0000);
        ranges.push(0..MMIO_HOLE_START);
        ranges.push(HIGH_RAM_START..HIGH_RAM_START + (2 << 30)); // RAM above 4 GiB
        ranges.sort_by_key(|r| r.start);
        for w in ranges.windows(2) {
            assert!(w[0].end <= w[1].start, "{:#x?} overlaps {:#x?}", w[0], w[1]);
        }
        assert!(all[1..].iter().all(|w| w.ecam.end <= 1 << 32 && w.mem32.end <= 1 << 32));
        assert_eq!(pci_segment_windows(MAX_PCI_SEGMENTS, 1 << 30), None);
    }

    #[test]
    fn fixed_devices_sit_in_the_hole() {
        for a in [IOAPIC_ADDR, VTD_REGISTERS_START, ACPI_START] {
            assert!((MMIO_HOLE_START..HIGH_RAM_START).contains(&a) || a < 0x10_0000);
        }
    }
}
