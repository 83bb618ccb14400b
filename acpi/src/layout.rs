//! Placement of the tables in the guest-physical region reserved for them.
//!
//! Tables are placed one after the other in the order asked for, each at the next address with
//! the alignment it needs: 16 bytes for the RSDP (a BIOS-area scan only looks at 16-byte
//! boundaries, ACPI 6.5 section 5.2.5.1), 8 bytes for the others (their 64-bit fields then stay
//! naturally aligned).

use std::ops::Range;

use crate::error::Error;

/// Alignment of the RSDP.
pub(crate) const RSDP_ALIGN: u64 = 16;
/// Alignment of every other table.
pub(crate) const TABLE_ALIGN: u64 = 8;

/// Hands out consecutive, aligned, non-overlapping addresses inside a region.
#[derive(Debug)]
pub(crate) struct Placer {
    region: Range<u64>,
    next: u64,
}

impl Placer {
    pub(crate) fn new(region: Range<u64>) -> Self {
        Self { next: region.start, region }
    }

    /// The address of a `len`-byte table named `table`, aligned to `align` (a power of two), or
    /// an error if it would end past the region.
    pub(crate) fn place(&mut self, table: &str, len: usize, align: u64) -> Result<u64, Error> {
        let does_not_fit = || Error::DoesNotFit {
            table: table.to_owned(),
            len,
            start: self.region.start,
            end: self.region.end,
        };
        let addr = self.next.checked_next_multiple_of(align).ok_or_else(does_not_fit)?;
        let end = u64::try_from(len).ok().and_then(|len| addr.checked_add(len)).ok_or_else(does_not_fit)?;
        if end > self.region.end {
            return Err(does_not_fit());
        }
        self.next = end;
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_and_packs() {
        let mut p = Placer::new(0xe_0004..0xe_0100);
        assert_eq!(p.place("RSDP", 36, RSDP_ALIGN).unwrap(), 0xe_0010);
        // 0xe_0010 + 36 = 0xe_0034, next multiple of 8 is 0xe_0038.
        assert_eq!(p.place("XSDT", 52, TABLE_ALIGN).unwrap(), 0xe_0038);
        assert_eq!(p.place("FACP", 8, TABLE_ALIGN).unwrap(), 0xe_0070);
    }

    #[test]
    fn exact_fit_and_overflow() {
        let mut p = Placer::new(0x1000..0x1030);
        assert_eq!(p.place("A", 0x30, 16).unwrap(), 0x1000);
        let err = p.place("B", 1, 8).unwrap_err();
        assert!(
            matches!(err, Error::DoesNotFit { ref table, len: 1, start: 0x1000, end: 0x1030 } if table == "B")
        );
    }

    #[test]
    fn empty_or_inverted_region() {
        assert!(Placer::new(0x1000..0x1000).place("RSDP", 36, 16).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 0x2000..0x1000;
        assert!(Placer::new(inverted).place("RSDP", 36, 16).is_err());
    }

    #[test]
    fn no_wraparound_at_top_of_address_space() {
        let mut p = Placer::new(u64::MAX - 4..u64::MAX);
        assert!(p.place("RSDP", 36, 16).is_err());
    }
}
