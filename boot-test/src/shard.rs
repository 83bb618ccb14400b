//! `--shard I/N`: which runs one of N CI jobs takes. A run belongs to
//! the shard its name hashes to (SHA-256 of `MACHINE/VARIANT`, its first
//! eight bytes as a big-endian number, modulo N), so that the split is
//! the same on every machine and every build, whatever the order of the
//! matrix files and of the runs in them, and a run keeps its shard when
//! others are added or removed.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shards a run can be split into at most.
pub const MAX_SHARDS: u32 = 1000;

/// Shard `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, 1 to `count`.
    pub index: u32,
    /// How many.
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `I/N` as `--shard` takes it.
pub fn parse(text: &str) -> Result<Shard, String> {
    let bad = || format!("'{text}': expected I/N, shard I of N, with 1 <= I <= N <= {MAX_SHARDS}");
    let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
    let index: u32 = i.trim().parse().map_err(|_| bad())?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if index == 0 || index > count || count > MAX_SHARDS {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// The shard (from 1) of `count` the run named `name` belongs to.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u64::from(count.max(1));
    // The remainder is below `count`, which is a u32.
    (u64::from_be_bytes(first) % n) as u32 + 1
}

impl Shard {
    /// Whether the run named `name` is in this shard.
    pub fn holds(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n() {
        assert_eq!(parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(parse(" 1 / 1 "), Ok(Shard { index: 1, count: 1 }));
        for bad in ["", "1", "0/3", "4/3", "1/0", "a/b", "1/3/4", "-1/3", "1/1001"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 2, count: 3 }.to_string(), "2/3");
    }

    /// The hash is pinned: a different function would move runs between
    /// the shards of CI jobs that already run.
    #[test]
    fn the_hash_is_sha256_of_the_name() {
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(shard_of("abc", 1000), (0xba78_16bf_8f01_cfea_u64 % 1000) as u32 + 1);
        assert_eq!(shard_of("anything", 1), 1);
    }

    #[test]
    fn every_name_is_in_exactly_one_shard() {
        for count in 1..=7 {
            for i in 0..50 {
                let name = format!("machine{i}/variant");
                let holders = (1..=count).filter(|&index| Shard { index, count }.holds(&name)).count();
                assert_eq!(holders, 1, "{name} in {count} shards");
            }
        }
    }
}
