//! Who the tables say they come from: the OEM fields of every table header (ACPI 6.5 section
//! 5.2.6), and a header factory for the tables this crate encodes itself.
//!
//! The creator ID/revision are left to `acpi_tables` ("RVAT", 1): it is the utility that lays out
//! every header, including those of the tables it builds whole (XSDT, FADT), so all tables agree.

use acpi_tables::sdt::Sdt;

/// OEM ID: six bytes, space padded.
pub(crate) const OEM_ID: [u8; 6] = *b"DMAVM ";
/// OEM table ID: eight bytes, space padded; the same for every table of this machine model.
pub(crate) const OEM_TABLE_ID: [u8; 8] = *b"DMAVM   ";
/// OEM revision of the machine model's tables.
pub(crate) const OEM_REVISION: u32 = 1;
/// Hypervisor Vendor Identity of the FADT (ACPI 6.5 section 5.2.9, offset 268): eight bytes.
pub(crate) const HYPERVISOR_VENDOR_ID: [u8; 8] = *b"DMAVM\0\0\0";

/// Length of the common table header (ACPI 6.5 section 5.2.6).
pub(crate) const HEADER_LEN: usize = 36;

/// An empty table (header only, checksum valid) with this crate's OEM identity.
pub(crate) fn new_table(signature: [u8; 4], revision: u8) -> Sdt {
    Sdt::new(signature, HEADER_LEN as u32, revision, OEM_ID, OEM_TABLE_ID, OEM_REVISION)
}
