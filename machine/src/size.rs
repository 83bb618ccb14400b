//! Parsing of memory sizes given on the command line (`512M`, `2G`).

/// Parses a size in bytes: a whole number with an optional binary suffix
/// `K`, `M`, `G` or `T` (case-insensitive, an optional trailing `B` or `iB`
/// allowed). A bare number means mebibytes, as with QEMU's `-m`, because a
/// guest memory size in bytes is never what a user means.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("'{text}' is not a size: expected a number such as 512M or 2G"));
    }
    let unit = suffix.to_ascii_lowercase();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(&unit);
    let shift = match unit {
        "" | "m" => 20,
        "k" => 10,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("'{text}' has an unknown unit '{suffix}': use K, M, G or T")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("'{text}' is too large"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("256"), Ok(256 << 20));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "M", "-1G", "1.5G", "12Q", "1 G G", "99999999999999999999", "17179869184G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
