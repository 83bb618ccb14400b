//! Extended System Description Table (ACPI 6.5 section 5.2.8): the list of 64-bit table
//! addresses the OS starts from. It names every table except the DSDT (found through the FADT)
//! and the RSDP (which points at the XSDT).

use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use crate::identity::{HEADER_LEN, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// Length of an XSDT listing `entries` tables.
pub(crate) fn len(entries: usize) -> usize {
    HEADER_LEN + entries * 8
}

/// The XSDT listing the tables at `entries`, in that order.
pub(crate) fn encode(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &addr in entries {
        xsdt.add_entry(addr);
    }
    let mut bytes = Vec::with_capacity(len(entries.len()));
    xsdt.to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{byte_sum, le_u32, le_u64};

    #[test]
    fn lists_entries_in_order() {
        let bytes = encode(&[0xe_0100, 0xe_0200, 0xe_0300]);
        assert_eq!(bytes.len(), 36 + 3 * 8);
        assert_eq!(bytes.len(), len(3));
        assert_eq!(&bytes[0..4], b"XSDT");
        assert_eq!(le_u32(&bytes, 4) as usize, bytes.len());
        assert_eq!(bytes[8], 1, "revision");
        assert_eq!(byte_sum(&bytes), 0);
        assert_eq!(le_u64(&bytes, 36), 0xe_0100);
        assert_eq!(le_u64(&bytes, 44), 0xe_0200);
        assert_eq!(le_u64(&bytes, 52), 0xe_0300);
    }
}
