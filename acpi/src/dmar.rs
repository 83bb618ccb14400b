//! DMA Remapping Reporting table (DMAR; VT-d 4.1 chapter 8): the Intel VT-d remapping hardware
//! units and the PCI functions each translates. `acpi_tables` has no DMAR; this is written from
//! the specification.
//!
//! Layout (all little endian):
//!
//! ```text
//! 0   header (36 bytes), revision 1
//! 36  u8 host address width (the width in bits minus one), u8 flags, 10 reserved bytes
//! 48  one DRHD per unit (section 8.3), type 0:
//!       u16 type, u16 length, u8 flags (bit 0 INCLUDE_PCI_ALL), u8 size (register window:
//!       2^size pages), u16 segment, u64 register base address, then device scopes
//! ..  a device scope (section 8.3.1) per translated function, type 1 (PCI endpoint):
//!       u8 type, u8 length (6 + 2 per path entry), u8 flags, u8 reserved, u8 enumeration ID,
//!       u8 start bus number, then (u8 device, u8 function) per bridge level and the function
//! ```
//!
//! Every dmavm function sits on its segment's root bus, so each path is one entry and each
//! scope 8 bytes; DRHDs are then multiples of 8 bytes and every register base is 8-byte aligned.
//!
//! Flags: `INTR_REMAP` (bit 0) is clear because the units implement no interrupt remapping: a
//! guest that saw it would program interrupt-remapping tables nobody reads and route its MSIs
//! through them. `X2APIC_OPT_OUT` (bit 1) only qualifies `INTR_REMAP` (it asks the OS not to use
//! x2APIC mode with interrupt remapping) and is clear with it. `DMA_CTRL_PLATFORM_OPT_IN`
//! (bit 2) claims firmware kept DMA protection on across boot for external ports, which no
//! dmavm machine has, and is clear. There is no RMRR: no device needs memory it reaches before
//! the OS maps it (no USB legacy emulation, no integrated graphics), so no range has to stay
//! identity-mapped.

use std::collections::HashSet;

use crate::description::{Dmar, DmarScope, DmarUnit, Platform};
use crate::error::Error;
use crate::identity::{new_table, HEADER_LEN};

/// DMAR revision of VT-d 4.1's table.
const REVISION: u8 = 1;
/// Length of the fixed part: header, host address width, flags, 10 reserved bytes.
const FIXED_LEN: usize = HEADER_LEN + 12;
/// Remapping structure type of a DRHD.
const TYPE_DRHD: u16 = 0;
/// Length of a DRHD without device scopes.
const DRHD_LEN: usize = 16;
/// DRHD flag: every function of the segment no other unit names.
const INCLUDE_PCI_ALL: u8 = 1;
/// DRHD size field: the register window is 2^0 = one 4 KiB page.
const REGISTER_PAGES_LOG2: u8 = 0;
/// Device scope type of a PCI endpoint device.
const SCOPE_PCI_ENDPOINT: u8 = 1;
/// Length of a device scope with one path entry.
const SCOPE_LEN: u8 = 8;
/// Register windows are pages.
const PAGE: u64 = 0x1000;

/// A PCI-endpoint device scope for function `bdf`: start bus, then its (device, function).
fn endpoint_scope(bdf: u16) -> [u8; SCOPE_LEN as usize] {
    let [function_and_device, bus] = bdf.to_le_bytes();
    [SCOPE_PCI_ENDPOINT, SCOPE_LEN, 0, 0, 0, bus, function_and_device >> 3, function_and_device & 7]
}

fn drhd(unit: &DmarUnit) -> Result<Vec<u8>, Error> {
    let (flags, functions): (u8, &[u16]) = match &unit.scope {
        DmarScope::IncludePciAll => (INCLUDE_PCI_ALL, &[]),
        DmarScope::Endpoints(list) => (0, list),
    };
    let too_large = || Error::DmarUnitTooLarge { segment: unit.segment, functions: functions.len() };
    let len = DRHD_LEN + functions.len() * usize::from(SCOPE_LEN);
    let len = u16::try_from(len).map_err(|_| too_large())?;
    let mut s = Vec::with_capacity(usize::from(len));
    s.extend_from_slice(&TYPE_DRHD.to_le_bytes());
    s.extend_from_slice(&len.to_le_bytes());
    s.extend_from_slice(&[flags, REGISTER_PAGES_LOG2]);
    s.extend_from_slice(&unit.segment.to_le_bytes());
    s.extend_from_slice(&unit.register_base.to_le_bytes());
    for &bdf in functions {
        s.extend_from_slice(&endpoint_scope(bdf));
    }
    Ok(s)
}

/// Checks everything the DMAR promises about `dmar` (see [`Dmar`]) against `platform`.
fn check(dmar: &Dmar, platform: &Platform) -> Result<(), Error> {
    if dmar.units.is_empty() {
        return Err(Error::DmarNoUnit);
    }
    if !(12..=64).contains(&dmar.host_address_width) {
        return Err(Error::DmarHostAddressWidth(dmar.host_address_width));
    }
    let mut bases = HashSet::new();
    let mut functions = HashSet::new();
    for unit in &dmar.units {
        let segment = unit.segment;
        let base = unit.register_base;
        if base == 0 || base % PAGE != 0 || base.checked_add(PAGE).is_none() || !bases.insert(base) {
            return Err(Error::DmarRegisterBase { segment, base });
        }
        let root = platform.pci_roots.iter().find(|r| r.segment == segment);
        let Some(root) = root else {
            return Err(Error::DmarSegmentNotRoot(segment));
        };
        match &unit.scope {
            DmarScope::IncludePciAll => {
                if dmar.units.iter().filter(|u| u.segment == segment).count() > 1 {
                    return Err(Error::DmarIncludeAllNotAlone(segment));
                }
            }
            DmarScope::Endpoints(list) if list.is_empty() => return Err(Error::DmarEmptyScope(segment)),
            DmarScope::Endpoints(list) => {
                for &bdf in list {
                    let bus = bdf >> 8;
                    if bus < u16::from(root.bus_start) || bus > u16::from(root.bus_end) {
                        return Err(Error::DmarFunctionNotOnRoot { segment, bdf });
                    }
                    if !functions.insert((segment, bdf)) {
                        return Err(Error::DmarFunctionInTwoUnits { segment, bdf });
                    }
                }
            }
        }
    }
    Ok(())
}

/// The DMAR of `platform`, or `None` if it has no VT-d units.
pub(crate) fn encode(platform: &Platform) -> Result<Option<Vec<u8>>, Error> {
    let Some(dmar) = &platform.dmar else {
        return Ok(None);
    };
    check(dmar, platform)?;
    let mut fixed = [0u8; FIXED_LEN - HEADER_LEN];
    // The field holds the width minus one (VT-d 4.1 section 8.1).
    fixed[0] = dmar.host_address_width - 1;
    // fixed[1]: flags, all clear (see the module documentation).
    let mut table = new_table(*b"DMAR", REVISION);
    table.append_slice(&fixed);
    for unit in &dmar.units {
        table.append_slice(&drhd(unit)?);
    }
    Ok(Some(table.as_slice().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::PciRoot;
    use crate::test_utils::{byte_sum, le_u16, le_u32, le_u64, sample_pci_root, sample_platform};

    /// Segment 0 (buses 0-0xff) with a unit for 00:01.0 and 00:03.2, segment 1 (bus 0) with a
    /// unit for 0001:00:02.0.
    fn platform_with_dmar() -> Platform {
        let mut p = sample_platform();
        p.pci_roots = vec![
            sample_pci_root(),
            PciRoot { segment: 1, bus_start: 0, bus_end: 0, ecam_base: 0xa000_0000, ..sample_pci_root() },
        ];
        p.dmar = Some(Dmar {
            host_address_width: 48,
            units: vec![
                DmarUnit {
                    segment: 0,
                    register_base: 0xfed9_0000,
                    scope: DmarScope::Endpoints(vec![0x08, 0x1a]),
                },
                DmarUnit { segment: 1, register_base: 0xfed9_1000, scope: DmarScope::Endpoints(vec![0x10]) },
            ],
        });
        p
    }

    fn dmar_mut(p: &mut Platform) -> &mut Dmar {
        p.dmar.as_mut().unwrap()
    }

    #[test]
    fn no_vtd_no_table() {
        assert_eq!(encode(&sample_platform()).unwrap(), None);
    }

    #[test]
    fn units_on_two_segments_bytes() {
        let b = encode(&platform_with_dmar()).unwrap().unwrap();
        assert_eq!(b.len(), 48 + (16 + 2 * 8) + (16 + 8));
        assert_eq!(&b[0..4], b"DMAR");
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(b[8], 1, "revision");
        assert_eq!(&b[10..16], b"DMAVM ");
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(
            b[36..48],
            [
                47,   // host address width 48 bits, minus one
                0x00, // flags: no INTR_REMAP, no X2APIC_OPT_OUT, no DMA_CTRL_PLATFORM_OPT_IN
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
            ]
        );
        assert_eq!(
            b[48..80],
            [
                0x00, 0x00, 0x20, 0x00, // DRHD, length 32
                0x00, // flags: explicit scope
                0x00, // size: one page of registers
                0x00, 0x00, // segment 0
                0x00, 0x00, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, // register base 0xfed9_0000
                0x01, 0x08, 0x00, 0x00, 0x00, 0x00, // PCI endpoint, length 8, enumeration ID 0, bus 0
                0x01, 0x00, // path: device 1, function 0
                0x01, 0x08, 0x00, 0x00, 0x00, 0x00, // PCI endpoint
                0x03, 0x02, // path: device 3, function 2
            ]
        );
        assert_eq!(
            b[80..104],
            [
                0x00, 0x00, 0x18, 0x00, // DRHD, length 24
                0x00, 0x00, // flags, size
                0x01, 0x00, // segment 1
                0x00, 0x10, 0xd9, 0xfe, 0x00, 0x00, 0x00, 0x00, // register base 0xfed9_1000
                0x01, 0x08, 0x00, 0x00, 0x00, 0x00, // PCI endpoint, bus 0
                0x02, 0x00, // path: device 2, function 0
            ]
        );
    }

    #[test]
    fn include_all_has_no_scope() {
        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1].scope = DmarScope::IncludePciAll;
        let b = encode(&p).unwrap().unwrap();
        assert_eq!(b.len(), 48 + 32 + 16);
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(le_u16(&b, 80), 0, "DRHD");
        assert_eq!(le_u16(&b, 82), 16, "no device scope");
        assert_eq!(b[84], INCLUDE_PCI_ALL);
        assert_eq!(le_u16(&b, 86), 1);
        assert_eq!(le_u64(&b, 88), 0xfed9_1000);
    }

    #[test]
    fn a_function_on_another_bus_has_its_bus() {
        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[0].scope = DmarScope::Endpoints(vec![0x0508 | 7]);
        let b = encode(&p).unwrap().unwrap();
        assert_eq!(b[64..72], [0x01, 0x08, 0x00, 0x00, 0x00, 0x05, 0x01, 0x07]);
    }

    #[test]
    fn structures_tile_the_table() {
        let b = encode(&platform_with_dmar()).unwrap().unwrap();
        let mut at = 48;
        let mut scopes = 0;
        while at < b.len() {
            let len = usize::from(le_u16(&b, at + 2));
            let mut s = at + 16;
            while s < at + len {
                assert_eq!(b[s + 1], SCOPE_LEN);
                scopes += 1;
                s += usize::from(b[s + 1]);
            }
            assert_eq!(s, at + len, "scopes end at the DRHD's end");
            assert_eq!(le_u64(&b, at + 8) % 8, 0);
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(scopes, 3);
    }

    #[test]
    fn what_the_table_cannot_say_is_refused() {
        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units.clear();
        assert!(matches!(encode(&p), Err(Error::DmarNoUnit)));

        for width in [0, 11, 65] {
            let mut p = platform_with_dmar();
            dmar_mut(&mut p).host_address_width = width;
            assert!(matches!(encode(&p), Err(Error::DmarHostAddressWidth(w)) if w == width));
        }

        // Zero, not a page, the other unit's (reported at the second), the last page of the
        // address space (its window would wrap).
        for (base, at) in [(0, 0), (0xfed9_0800, 0), (0xfed9_1000, 1), (!0xfff_u64, 0)] {
            let mut p = platform_with_dmar();
            dmar_mut(&mut p).units[0].register_base = base;
            let err = encode(&p).unwrap_err();
            assert!(
                matches!(err, Error::DmarRegisterBase { segment, base: b } if b == base && segment == at),
                "{base:#x}: {err}"
            );
        }

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1].segment = 2;
        assert_eq!(
            encode(&p).unwrap_err().to_string(),
            "VT-d unit of PCI segment 2: no PCI host bridge of the platform has that segment"
        );

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1].scope = DmarScope::Endpoints(vec![]);
        assert!(matches!(encode(&p), Err(Error::DmarEmptyScope(1))));

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1].scope = DmarScope::Endpoints(vec![0x0110]);
        assert_eq!(
            encode(&p).unwrap_err().to_string(),
            "DMAR names PCI function 0001:01:02.0, which is not below a PCI host bridge of the platform"
        );

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1] =
            DmarUnit { segment: 0, register_base: 0xfed9_1000, scope: DmarScope::Endpoints(vec![0x1a]) };
        assert_eq!(
            encode(&p).unwrap_err().to_string(),
            "DMAR puts PCI function 0000:00:03.2 in the scope of two units"
        );

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[1] =
            DmarUnit { segment: 0, register_base: 0xfed9_1000, scope: DmarScope::IncludePciAll };
        assert!(matches!(encode(&p), Err(Error::DmarIncludeAllNotAlone(0))));

        let mut p = platform_with_dmar();
        dmar_mut(&mut p).units[0].scope = DmarScope::Endpoints((0..=0xffff).collect());
        assert!(matches!(encode(&p), Err(Error::DmarUnitTooLarge { segment: 0, functions: 0x1_0000 })));
    }
}
