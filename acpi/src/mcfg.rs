//! PCI Express memory-mapped configuration space table (PCI Firmware 3.0 section 4.1.2): where
//! the ECAM of each PCI segment is.
//!
//! Header, 8 reserved bytes, then one 16-byte allocation per host bridge: base address (of bus
//! 0 of the segment) u64, segment group u16, start bus u8, end bus u8, 4 reserved bytes. The
//! encoding is `acpi_tables`'; this module decides the content.

use acpi_tables::mcfg::MCFG;
use acpi_tables::Aml;

use crate::description::PciRoot;
use crate::error::Error;
use crate::identity::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::pci;

/// The MCFG of `roots`, one allocation each in their order, or `None` without roots (an MCFG
/// with no allocation is useless, and Linux reports it as an error).
pub(crate) fn encode(roots: &[PciRoot]) -> Result<Option<Vec<u8>>, Error> {
    pci::check(roots)?;
    if roots.is_empty() {
        return Ok(None);
    }
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for root in roots {
        mcfg.add_ecam(root.ecam_base, root.segment, root.bus_start, root.bus_end);
    }
    let mut bytes = Vec::new();
    mcfg.to_aml_bytes(&mut bytes);
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{byte_sum, le_u32, sample_pci_root};

    #[test]
    fn no_roots_no_table() {
        assert_eq!(encode(&[]).unwrap(), None);
    }

    #[test]
    fn one_allocation_per_root() {
        let first = sample_pci_root();
        let second = PciRoot {
            segment: 0x0102,
            bus_start: 0x10,
            bus_end: 0x3f,
            ecam_base: 0xa000_0000,
            mem32: (0xe000_0000, 0x100_0000),
            mem64: (0, 0),
            ..first
        };
        let b = encode(&[first, second]).unwrap().unwrap();
        assert_eq!(&b[0..4], b"MCFG");
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(b.len(), 36 + 8 + 2 * 16);
        assert_eq!(b[8], 1, "revision");
        assert_eq!(&b[10..16], b"DMAVM ");
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(b[36..44], [0; 8], "reserved");
        assert_eq!(
            b[44..60],
            [
                0x00, 0x00, 0x00, 0xb0, 0x00, 0x00, 0x00, 0x00, // base address 0xb000_0000
                0x00, 0x00, // segment group 0
                0x00, // start bus
                0xff, // end bus
                0x00, 0x00, 0x00, 0x00, // reserved
            ]
        );
        assert_eq!(
            b[60..76],
            [
                0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0x00, 0x00, // base address of bus 0: 0xa000_0000
                0x02, 0x01, // segment group 0x0102
                0x10, // start bus
                0x3f, // end bus
                0x00, 0x00, 0x00, 0x00,
            ]
        );
    }

    #[test]
    fn invalid_roots_rejected() {
        let root = PciRoot { ecam_base: 0x1_0000_0000, ..sample_pci_root() };
        assert!(matches!(encode(&[root]), Err(Error::PciEcam { .. })));
    }
}
