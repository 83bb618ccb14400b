//! Ethernet MAC addresses of network devices: parsed from `mac=`, or
//! generated from the device's id when none is given, so that a guest sees
//! the same address on every run and with every dmavm version (its DHCP
//! leases and interface names keep working).

use std::fmt;

/// A unicast MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); a multicast address (the
    /// low bit of the first byte set) cannot be a device's own.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        let mut bytes = [0u8; 6];
        let well_formed = parts.len() == 6
            && parts.iter().zip(&mut bytes).all(|(p, b)| {
                // from_str_radix alone would take a sign ("+2").
                p.len() == 2
                    && p.bytes().all(|c| c.is_ascii_hexdigit())
                    && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok()
            });
        if !well_formed {
            return Err("expected six hexadecimal bytes such as 02:00:5e:10:00:01".into());
        }
        if bytes[0] & 1 != 0 {
            return Err("a multicast address (low bit of the first byte set) cannot be a device's".into());
        }
        Ok(Self(bytes))
    }

    /// The address of a device named `id` that was given none: locally
    /// administered (bit 1 of the first byte), unicast, the rest from the
    /// 64-bit FNV-1a hash of the id. FNV-1a is fixed by its definition
    /// (offset basis and prime below), so the address cannot change with
    /// the Rust release or a dependency, which std's hashers do not promise.
    pub fn generated(id: &str) -> Self {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let hash = id.bytes().fold(OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
        let h = hash.to_be_bytes();
        Self([(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]])
    }

    /// `mac` if given, else the address generated for `id`.
    pub fn or_generated(mac: Option<Self>, id: &str) -> Self {
        mac.unwrap_or_else(|| Self::generated(id))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let m = MacAddress::parse("02:AB:cd:00:10:ff").unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0x00, 0x10, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:10:ff");
        assert_eq!(MacAddress::parse("02-ab-cd-00-10-ff").unwrap(), m);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:0",
            "02:00:00:00:00:zz",
            "020000000000",
            "+2:00:00:00:00:00",
        ] {
            assert!(MacAddress::parse(bad).unwrap_err().contains("six hexadecimal bytes"), "{bad:?}");
        }
        assert!(MacAddress::parse("01:00:5e:00:00:01").unwrap_err().contains("multicast"));
    }

    #[test]
    fn generated_addresses_are_local_unicast_and_differ_per_id() {
        let ids = ["net0", "net1", "net2", "uplink", "a", ""];
        let macs: Vec<MacAddress> = ids.iter().map(|id| MacAddress::generated(id)).collect();
        for m in &macs {
            assert_eq!(m.0[0] & 0x03, 0x02, "{m}: locally administered unicast");
        }
        for (i, a) in macs.iter().enumerate() {
            for b in &macs[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(MacAddress::or_generated(None, "net0"), macs[0]);
        let given = MacAddress([0x02, 0, 0, 0, 0, 1]);
        assert_eq!(MacAddress::or_generated(Some(given), "net0"), given);
    }

    /// The addresses guests have seen must never change: these are pinned
    /// from the FNV-1a definition (offset basis 0xcbf29ce484222325, prime
    /// 0x100000001b3), checked against an independent implementation
    /// (Python: functools.reduce over the bytes).
    #[test]
    fn generated_addresses_are_stable() {
        assert_eq!(MacAddress::generated("net0").to_string(), "e6:3f:28:ba:a0:31");
        assert_eq!(MacAddress::generated("uplink").to_string(), "66:5c:16:77:b0:b0");
        // The empty input gives the offset basis itself.
        assert_eq!(MacAddress::generated("").to_string(), "ca:f2:9c:e4:84:22");
    }
}
