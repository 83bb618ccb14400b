//! ACPI name segments (ACPI 6.5 section 20.2.2, NameSeg): exactly four characters, the first
//! `A`-`Z` or `_`, the rest `A`-`Z`, `0`-`9` or `_`.
//!
//! `acpi_tables::aml::Path` panics on a malformed name; validating here keeps that from ever
//! happening with names built from the description (device indices).

use std::fmt;

/// A valid four-character ACPI name segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameSeg([u8; 4]);

const fn lead_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c == b'_'
}

const fn name_char(c: u8) -> bool {
    lead_char(c) || c.is_ascii_digit()
}

impl NameSeg {
    /// `name` if it is a valid name segment.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let bytes: [u8; 4] = name.as_bytes().try_into().ok()?;
        (lead_char(bytes[0]) && bytes[1..].iter().all(|&c| name_char(c))).then_some(Self(bytes))
    }

    /// A name fixed in the source, such as `_SEG`. Meant for `const` items, where an invalid name
    /// stops the build instead of reaching a guest.
    pub(crate) const fn literal(name: &[u8; 4]) -> Self {
        assert!(
            lead_char(name[0]) && name_char(name[1]) && name_char(name[2]) && name_char(name[3]),
            "not an ACPI name segment"
        );
        Self(*name)
    }

    /// `prefix` followed by `index` in upper-case hex, filling the four characters (e.g. "COM",
    /// 1 gives "COM1"; "VR", 0x1f gives "VR1F"), or `None` if the index does not fit.
    pub(crate) fn indexed(prefix: &str, index: usize) -> Option<Self> {
        let digits = 4usize.checked_sub(prefix.len())?;
        if digits == 0 || index >= 16usize.checked_pow(u32::try_from(digits).ok()?)? {
            return None;
        }
        Self::new(&format!("{prefix}{index:0digits$X}"))
    }

    /// The four characters.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever accepted.
        std::str::from_utf8(&self.0).unwrap_or("____")
    }
}

impl fmt::Display for NameSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(NameSeg::new("COM1").is_some());
        assert!(NameSeg::new("_SB_").is_some());
        assert!(NameSeg::new("1COM").is_none(), "leading digit");
        assert!(NameSeg::new("com1").is_none(), "lower case");
        assert!(NameSeg::new("COM").is_none(), "short");
        assert!(NameSeg::new("COM10").is_none(), "long");
    }

    #[test]
    fn literals() {
        const SEG: NameSeg = NameSeg::literal(b"_SEG");
        assert_eq!(SEG, NameSeg::new("_SEG").unwrap());
    }

    #[test]
    fn indexed_names() {
        assert_eq!(NameSeg::indexed("COM", 1).unwrap().as_str(), "COM1");
        assert_eq!(NameSeg::indexed("COM", 15).unwrap().as_str(), "COMF");
        assert!(NameSeg::indexed("COM", 16).is_none());
        assert_eq!(NameSeg::indexed("VR", 0x1f).unwrap().as_str(), "VR1F");
        assert_eq!(NameSeg::indexed("VR", 0).unwrap().as_str(), "VR00");
        assert!(NameSeg::indexed("VR", 256).is_none());
        assert!(NameSeg::indexed("ABCD", 0).is_none());
    }
}
