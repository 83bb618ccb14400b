//! Root System Description Pointer (ACPI 6.5 section 5.2.5).
//!
//! Revision 2 with both checksums: the first over the ACPI 1.0 part (bytes 0-19), the extended one
//! over all 36 bytes. The RSDT address is left 0: only the XSDT is provided, which every OS
//! since ACPI 2.0 (and Linux on an RSDP of revision >= 2) uses.

use acpi_tables::rsdp::Rsdp;
use acpi_tables::Aml;

use crate::identity::OEM_ID;

/// Length of a revision 2 RSDP.
pub(crate) const LEN: usize = 36;

/// The RSDP pointing at the XSDT at `xsdt_addr`.
pub(crate) fn encode(xsdt_addr: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LEN);
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{byte_sum, le_u32, le_u64};

    #[test]
    fn both_checksums_and_fields() {
        let bytes = encode(0x000e_0040);
        assert_eq!(bytes.len(), LEN);
        assert_eq!(&bytes[0..8], b"RSD PTR ");
        assert_eq!(byte_sum(&bytes[0..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(byte_sum(&bytes), 0, "extended checksum");
        assert_eq!(&bytes[9..15], b"DMAVM ");
        assert_eq!(bytes[15], 2, "revision");
        assert_eq!(le_u32(&bytes, 16), 0, "no RSDT");
        assert_eq!(le_u32(&bytes, 20), 36, "length");
        assert_eq!(le_u64(&bytes, 24), 0x000e_0040, "XSDT address");
    }
}
