//! The result of [`crate::build`]: table bytes and where they go.

/// Name given to the RSDP in [`Blob::signature`]. The RSDP is not a table and its real signature
/// is the eight bytes "RSD PTR "; "RSDP" is what dumps and logs call it.
pub const RSDP_SIGNATURE: [u8; 4] = *b"RSDP";

/// One table (or the RSDP), ready to be copied into guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Guest-physical address of the first byte.
    pub addr: u64,
    /// Table signature as in its header ("FACP", "APIC", "DSDT", "XSDT"), or [`RSDP_SIGNATURE`].
    pub signature: [u8; 4],
    /// The encoded table, checksum included.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// The signature as text, e.g. "FACP".
    pub fn signature_name(&self) -> String {
        String::from_utf8_lossy(&self.signature).into_owned()
    }

    /// File name for a dump of this table, `<SIG>.dat` (e.g. "FACP.dat", "RSDP.dat"): the raw
    /// bytes, as `iasl -d` and `acpixtract` expect them.
    pub fn dump_file_name(&self) -> String {
        format!("{}.dat", self.signature_name())
    }
}

/// All firmware tables of a machine, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// Guest-physical address of the RSDP (the guest's entry point into the tables; for Linux
    /// `boot_params.acpi_rsdp_addr`, or found by its scan of 0xe0000-0xfffff).
    pub rsdp_addr: u64,
    /// The RSDP and every table, in ascending address order, non-overlapping.
    pub blobs: Vec<Blob>,
}

impl AcpiTables {
    /// The blob with this signature (e.g. `*b"DSDT"`), if any.
    pub fn find(&self, signature: [u8; 4]) -> Option<&Blob> {
        self.blobs.iter().find(|b| b.signature == signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let b = Blob { addr: 0, signature: *b"FACP", bytes: vec![] };
        assert_eq!(b.signature_name(), "FACP");
        assert_eq!(b.dump_file_name(), "FACP.dat");
        let r = Blob { addr: 0, signature: RSDP_SIGNATURE, bytes: vec![] };
        assert_eq!(r.dump_file_name(), "RSDP.dat");
    }
}
