//! PCI Express host bridges: the checks on their description, and the DSDT devices that declare
//! them. The MCFG half is in [`crate::mcfg`].
//!
//! Each [`PciRoot`] becomes
//!
//! ```text
//! Device (PCIx) {                        // x = position in Platform::pci_roots
//!     Name (_HID, EisaId ("PNP0A08"))    // PCI Express host bridge
//!     Name (_CID, EisaId ("PNP0A03"))    // PCI host bridge
//!     Name (_UID, segment)
//!     Name (_CCA, coherent)              // the DMA contract: coherency of everything below
//!     Name (_SEG, segment)
//!     Name (_BBN, bus_start)
//!     Name (_CRS, ResourceTemplate () {
//!         WordBusNumber (ResourceProducer, ..., bus_start, bus_end, ...)
//!         IO (Decode16, 0x0CF8, 0x0CF8, 0x00, 0x08)   // segment 0 only
//!         DWordMemory (ResourceProducer, ..., NonCacheable, ReadWrite, mem32 ...)
//!         QWordMemory (ResourceProducer, ..., NonCacheable, ReadWrite, mem64 ...) // if any
//!     })
//! }
//! ```
//!
//! and, once for all roots, `Device (MBRD) { _HID PNP0C02, _UID 0, _CRS { Memory32Fixed per
//! ECAM region } }`.
//!
//! Why this shape, for Linux (x86, `drivers/acpi/pci_root.c`, `arch/x86/pci/`):
//! - Every I/O or memory resource of a host bridge's `_CRS` is taken as a window for the
//!   devices below it, whatever its producer/consumer bit ("firmware hasn't used that bit
//!   consistently, so we can't rely on it"), except exactly the ports 0xcf8-0xcff, which are
//!   dropped as the bridge's own configuration ports (`resource_is_pcicfg_ioport()` in
//!   `arch/x86/pci/acpi.c`). So the windows are marked produced as ACPI 6.5 section 6.4.3.5
//!   wants, the legacy ports appear only where they exist (segment 0), and the ECAM must not
//!   be in the bridge's `_CRS`.
//! - Linux uses an MCFG region only if a motherboard resource device (`PNP0C01`/`PNP0C02`)
//!   reserves it (`pci_mmcfg_reserved()` in `arch/x86/pci/mmconfig-shared.c`, following PCI
//!   Firmware 3.0 section 4.1.2); without usable ECAM a host bridge of a segment other than 0
//!   is not scanned at all. Hence `MBRD`.
//! - No `_OSC`: for a `PNP0A08` bridge Linux then logs that the platform keeps control of the
//!   PCIe features and leaves native hotplug, AER, PME and ASPM alone; MSI is unaffected.
//! - No `_PRT`: no INTx routing; devices must use MSI/MSI-X and should report Interrupt Pin 0
//!   (Linux's `acpi_pci_irq_enable()` returns early for pin 0).

use std::collections::HashSet;

use crate::description::PciRoot;
use crate::device_node::{DeviceNode, CID_PCI_HOST_BRIDGE, HID_MOTHERBOARD_RESOURCES, HID_PCIE_HOST_BRIDGE};
use crate::error::Error;
use crate::name_seg::NameSeg;
use crate::resource::Resource;

/// Configuration space of one bus in the ECAM: 32 devices x 8 functions x 4 KiB.
const ECAM_BUS_SIZE: u64 = 1 << 20;
/// The ECAM of every root must end at or below this (see [`PciRoot::ecam_base`]).
const ECAM_LIMIT: u64 = 1 << 32;
/// Configuration mechanism #1 (PCI Local Bus 3.0 section 3.2.2.3.2): CONFIG_ADDRESS at 0xcf8,
/// CONFIG_DATA at 0xcfc-0xcff; the ports segment 0 also answers on.
const LEGACY_CONFIG_PORTS: Resource = Resource::Io { base: 0xcf8, len: 8 };
/// Host bridges are named PCI0..PCIF.
const MAX_ROOTS: usize = 16;
/// PCI segment group number (ACPI 6.5 section 6.5.6).
const SEG: NameSeg = NameSeg::literal(b"_SEG");
/// Base bus number (ACPI 6.5 section 6.5.5).
const BBN: NameSeg = NameSeg::literal(b"_BBN");
/// The motherboard resource device.
const MOTHERBOARD: NameSeg = NameSeg::literal(b"MBRD");

/// The guest-physical ECAM region actually decoded by `root`, `(start, length)`: buses
/// `bus_start..=bus_end` from `ecam_base`, or an error if it is misaligned, wraps, or does not
/// lie below 4 GiB.
pub(crate) fn ecam_region(root: &PciRoot) -> Result<(u32, u32), Error> {
    let bad = || Error::PciEcam {
        segment: root.segment,
        base: root.ecam_base,
        bus_start: root.bus_start,
        bus_end: root.bus_end,
    };
    if root.ecam_base % ECAM_BUS_SIZE != 0 || root.bus_start > root.bus_end {
        return Err(bad());
    }
    let start = root.ecam_base.checked_add(u64::from(root.bus_start) * ECAM_BUS_SIZE).ok_or_else(bad)?;
    let len = (u64::from(root.bus_end) - u64::from(root.bus_start) + 1) * ECAM_BUS_SIZE;
    let end = start.checked_add(len).ok_or_else(bad)?;
    if end > ECAM_LIMIT {
        return Err(bad());
    }
    Ok((u32::try_from(start).map_err(|_| bad())?, u32::try_from(len).map_err(|_| bad())?))
}

/// Checks everything the tables assume about `roots`.
pub(crate) fn check(roots: &[PciRoot]) -> Result<(), Error> {
    if roots.len() > MAX_ROOTS {
        return Err(Error::TooManyPciRoots(roots.len()));
    }
    let mut segments = HashSet::new();
    for root in roots {
        if !segments.insert(root.segment) {
            return Err(Error::DuplicatePciSegment(root.segment));
        }
        if root.bus_start > root.bus_end {
            return Err(Error::PciBusRange {
                segment: root.segment,
                start: root.bus_start,
                end: root.bus_end,
            });
        }
        let (base, len) = root.mem32;
        if len == 0 || base.checked_add(len - 1).is_none() {
            return Err(Error::PciWindow {
                segment: root.segment,
                window: 32,
                base: u64::from(base),
                len: u64::from(len),
            });
        }
        let (base, len) = root.mem64;
        if len != 0 && base.checked_add(len - 1).is_none() {
            return Err(Error::PciWindow { segment: root.segment, window: 64, base, len });
        }
        ecam_region(root)?;
    }
    check_disjoint(roots)
}

/// Checks that no two ranges among the ECAM regions and memory windows of `roots` (already
/// checked one by one) overlap.
fn check_disjoint(roots: &[PciRoot]) -> Result<(), Error> {
    // (start, end exclusive, segment, what)
    let mut ranges: Vec<(u64, u128, u16, &'static str)> = Vec::with_capacity(3 * roots.len());
    for root in roots {
        let (ecam, ecam_len) = ecam_region(root)?;
        ranges.push((u64::from(ecam), u128::from(ecam) + u128::from(ecam_len), root.segment, "ECAM"));
        let (base, len) = root.mem32;
        ranges.push((u64::from(base), u128::from(base) + u128::from(len), root.segment, "32-bit window"));
        let (base, len) = root.mem64;
        if len != 0 {
            ranges.push((base, u128::from(base) + u128::from(len), root.segment, "64-bit window"));
        }
    }
    ranges.sort_unstable_by_key(|r| r.0);
    for pair in ranges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if u128::from(b.0) < a.1 {
            return Err(Error::PciRangesOverlap {
                segment: b.2,
                what: b.3,
                start: b.0,
                other_segment: a.2,
                other_what: a.3,
            });
        }
    }
    Ok(())
}

/// The `_CRS` of `root`'s host bridge (already checked).
fn host_bridge_resources(root: &PciRoot) -> Vec<Resource> {
    let mut resources = vec![Resource::BusNumbers { start: root.bus_start, end: root.bus_end }];
    if root.segment == 0 {
        resources.push(LEGACY_CONFIG_PORTS);
    }
    let (base, len) = root.mem32;
    resources.push(Resource::Memory32Window { base, len });
    let (base, len) = root.mem64;
    if len != 0 {
        resources.push(Resource::Memory64Window { base, len });
    }
    resources
}

/// The devices of `roots`: one host bridge each (PCI0, PCI1, ... by position), then the
/// motherboard resource device reserving their ECAM regions; nothing without roots.
pub(crate) fn device_nodes(roots: &[PciRoot]) -> Result<Vec<DeviceNode>, Error> {
    check(roots)?;
    let mut nodes = Vec::with_capacity(roots.len() + 1);
    let mut ecam = Vec::with_capacity(roots.len());
    for (i, root) in roots.iter().enumerate() {
        let name = NameSeg::indexed("PCI", i).ok_or(Error::TooManyPciRoots(roots.len()))?;
        nodes.push(DeviceNode {
            name,
            hid: HID_PCIE_HOST_BRIDGE,
            cid: Some(CID_PCI_HOST_BRIDGE),
            uid: u32::from(root.segment),
            // The DMA contract: the bridge declares the coherency of every device below it.
            cca: Some(root.coherent),
            integers: vec![(SEG, u64::from(root.segment)), (BBN, u64::from(root.bus_start))],
            resources: host_bridge_resources(root),
        });
        let (base, len) = ecam_region(root)?;
        ecam.push(Resource::Memory32Fixed { base, len });
    }
    if !roots.is_empty() {
        nodes.push(DeviceNode {
            name: MOTHERBOARD,
            hid: HID_MOTHERBOARD_RESOURCES,
            cid: None,
            uid: 0,
            cca: None,
            integers: Vec::new(),
            resources: ecam,
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::sample_pci_root;

    #[test]
    fn host_bridge_node() {
        let root = sample_pci_root();
        let nodes = device_nodes(&[root]).unwrap();
        assert_eq!(nodes.len(), 2);
        let pci0 = &nodes[0];
        assert_eq!(pci0.name.as_str(), "PCI0");
        assert_eq!(pci0.hid, HID_PCIE_HOST_BRIDGE);
        assert_eq!(pci0.cid, Some(CID_PCI_HOST_BRIDGE));
        assert_eq!(pci0.uid, 0);
        assert_eq!(pci0.cca, Some(true));
        let integers: Vec<_> = pci0.integers.iter().map(|(n, v)| (n.as_str().to_owned(), *v)).collect();
        assert_eq!(integers, [("_SEG".to_owned(), 0), ("_BBN".to_owned(), 0)]);
        assert_eq!(
            pci0.resources,
            [
                Resource::BusNumbers { start: 0, end: 0xff },
                Resource::Io { base: 0xcf8, len: 8 },
                Resource::Memory32Window { base: 0xc000_0000, len: 0x2000_0000 },
                Resource::Memory64Window { base: 0x100_0000_0000, len: 0x10_0000_0000 },
            ]
        );
        let mbrd = &nodes[1];
        assert_eq!(mbrd.name.as_str(), "MBRD");
        assert_eq!(mbrd.hid, HID_MOTHERBOARD_RESOURCES);
        assert_eq!(mbrd.cca, None);
        assert_eq!(mbrd.resources, [Resource::Memory32Fixed { base: 0xb000_0000, len: 0x1000_0000 }]);
    }

    #[test]
    fn other_segments() {
        let first = sample_pci_root();
        let second = PciRoot {
            segment: 1,
            bus_start: 0x10,
            bus_end: 0x1f,
            ecam_base: 0xa000_0000,
            mem32: (0xe000_0000, 0x1000_0000),
            mem64: (0, 0),
            coherent: false,
        };
        let nodes = device_nodes(&[first, second]).unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str().to_owned()).collect();
        assert_eq!(names, ["PCI0", "PCI1", "MBRD"]);
        let pci1 = &nodes[1];
        assert_eq!((pci1.uid, pci1.cca), (1, Some(false)));
        assert_eq!(pci1.integers[0].1, 1, "_SEG");
        assert_eq!(pci1.integers[1].1, 0x10, "_BBN");
        // No legacy configuration ports and no 64-bit window.
        assert_eq!(
            pci1.resources,
            [
                Resource::BusNumbers { start: 0x10, end: 0x1f },
                Resource::Memory32Window { base: 0xe000_0000, len: 0x1000_0000 },
            ]
        );
        // The ECAM of buses 0x10-0x1f only, counted from bus 0's address.
        assert_eq!(nodes[2].resources[1], Resource::Memory32Fixed { base: 0xa100_0000, len: 0x100_0000 });
    }

    #[test]
    fn overlapping_roots() {
        let first = sample_pci_root();
        let second = PciRoot {
            segment: 1,
            bus_start: 0,
            bus_end: 0,
            ecam_base: 0xa000_0000,
            mem32: (0xe000_0000, 0x100_0000),
            mem64: (0, 0),
            coherent: true,
        };
        assert!(device_nodes(&[first, second]).is_ok());
        for (other, message) in [
            (
                PciRoot { ecam_base: 0xb080_0000, ..second },
                "PCI segment 1: its ECAM at 0xb0800000 overlaps the ECAM of PCI segment 0",
            ),
            (
                PciRoot { mem32: (0xdfff_f000, 0x2000), ..second },
                "PCI segment 1: its 32-bit window at 0xdffff000 overlaps the 32-bit window of PCI segment 0",
            ),
            (
                PciRoot { mem64: (0x100_8000_0000, 0x1000), ..second },
                "PCI segment 1: its 64-bit window at 0x10080000000 overlaps the 64-bit window of PCI segment 0",
            ),
            (
                PciRoot { ecam_base: 0xc010_0000, ..second },
                "PCI segment 1: its ECAM at 0xc0100000 overlaps the 32-bit window of PCI segment 0",
            ),
        ] {
            assert_eq!(device_nodes(&[first, other]).unwrap_err().to_string(), message);
        }
        // One bridge's own ranges count too.
        let own = PciRoot { mem32: (0xb100_0000, 0x1000), ..first };
        assert_eq!(
            device_nodes(&[own]).unwrap_err().to_string(),
            "PCI segment 0: its 32-bit window at 0xb1000000 overlaps the ECAM of PCI segment 0"
        );
    }

    #[test]
    fn no_roots_no_devices() {
        assert!(device_nodes(&[]).unwrap().is_empty());
    }

    #[test]
    fn invalid_roots() {
        let ok = sample_pci_root();
        let err = |roots: &[PciRoot]| device_nodes(roots).unwrap_err();

        assert!(matches!(err(&[ok; 17]), Error::TooManyPciRoots(17)));
        // Each its own ECAM (one bus) and windows.
        let many: Vec<PciRoot> = (0..16)
            .map(|s| PciRoot {
                segment: s,
                bus_end: 0,
                ecam_base: 0xa000_0000 + u64::from(s) * 0x10_0000,
                mem32: (0xc000_0000 + u32::from(s) * 0x100_0000, 0x100_0000),
                mem64: (0x100_0000_0000 + u64::from(s) * 0x1_0000_0000, 0x1_0000_0000),
                ..ok
            })
            .collect();
        assert!(device_nodes(&many).is_ok(), "16 roots fit");
        assert_eq!(device_nodes(&many).unwrap()[15].name.as_str(), "PCIF");

        assert!(matches!(err(&[ok, PciRoot { ecam_base: 0, ..ok }]), Error::DuplicatePciSegment(0)));
        assert!(matches!(
            err(&[PciRoot { bus_start: 2, bus_end: 1, ..ok }]),
            Error::PciBusRange { segment: 0, start: 2, end: 1 }
        ));
        assert!(matches!(
            err(&[PciRoot { mem32: (0xc000_0000, 0), ..ok }]),
            Error::PciWindow { window: 32, .. }
        ));
        assert!(matches!(
            err(&[PciRoot { mem32: (0xffff_f000, 0x2000), ..ok }]),
            Error::PciWindow { window: 32, .. }
        ));
        assert!(
            device_nodes(&[PciRoot { mem32: (0xffff_e000, 0x2000), ..ok }]).is_ok(),
            "window up to 4 GiB"
        );
        assert!(matches!(
            err(&[PciRoot { mem64: (u64::MAX, 2), ..ok }]),
            Error::PciWindow { window: 64, .. }
        ));
        assert!(device_nodes(&[PciRoot { mem64: (u64::MAX, 0), ..ok }]).is_ok(), "no 64-bit window");

        for ecam_base in [0xb000_0800, 0xf800_0000, 0x1_0000_0000, u64::MAX - 0xfffff] {
            assert!(
                matches!(err(&[PciRoot { ecam_base, ..ok }]), Error::PciEcam { base, .. } if base == ecam_base),
                "{ecam_base:#x}"
            );
        }
        // Ending exactly at 4 GiB is fine; what lies below bus_start does not count.
        assert!(device_nodes(&[PciRoot { ecam_base: 0xf000_0000, ..ok }]).is_ok());
        let high_buses = PciRoot { ecam_base: 0xf000_0000, bus_start: 0xf0, bus_end: 0xff, ..ok };
        assert_eq!(ecam_region(&high_buses).unwrap(), (0xff00_0000, 0x100_0000));
    }
}
