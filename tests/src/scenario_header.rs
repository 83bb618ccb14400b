//! What a scenario script asks of the run that carries it, in its header
//! (a `# KEY: N` line among its first [`HEADER_LINES`], words after `N`
//! being the reason): `# l1-cpus: N`, the vCPUs the sandbox's L1 needs for
//! it, and `# timeout: SECS`, the time it needs when that is more than the
//! default limit. A run of several scenarios gives each the most any of
//! them asks.

use crate::paths::Paths;

/// Lines of a script searched for its declarations.
const HEADER_LINES: usize = 20;

/// The value `script` declares for `key`, if any within `range`.
pub fn declared(script: &str, key: &str, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    let prefix = format!("# {key}:");
    script
        .lines()
        .take(HEADER_LINES)
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .find(|n| range.contains(n))
}

/// The most any of the scenarios `names` declares for `key` (within
/// `range`), if one does.
pub fn most_declared(
    paths: &Paths,
    names: &[String],
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    names
        .iter()
        .filter_map(|name| std::fs::read_to_string(paths.scenario(name)).ok())
        .filter_map(|text| declared(&text, key, range.clone()))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_line_declares_a_value_in_range() {
        assert_eq!(declared("#!/bin/sh\n# l1-cpus: 2\n: x\n", "l1-cpus", 1..=8), Some(2));
        assert_eq!(declared("# timeout: 300 (64 MiB each way)\n", "timeout", 1..=3600), Some(300));
        assert_eq!(declared("#!/bin/sh\n# what it does\n", "l1-cpus", 1..=8), None);
        for bad in ["# l1-cpus: 0", "# l1-cpus: 9", "# l1-cpus: two", "#l1-cpus: 2"] {
            assert_eq!(declared(bad, "l1-cpus", 1..=8), None, "{bad}");
        }
        let late = format!("{}# l1-cpus: 2\n", "# .\n".repeat(HEADER_LINES));
        assert_eq!(declared(&late, "l1-cpus", 1..=8), None, "only the header counts");
    }

    /// The network benchmark asks for a second L1 vCPU, the network
    /// scenarios moving 64 MiB for more time than the default limit; a
    /// run with one of them gets it.
    #[test]
    fn scenarios_get_what_one_of_their_run_asks() {
        let paths = Paths::new();
        let names = ["bench-net".to_string(), "linux-status".to_string()];
        assert_eq!(most_declared(&paths, &names, "l1-cpus", 1..=8), Some(2));
        for name in ["net-mmio", "net-pci"] {
            let names = [name.to_string(), "linux-status".to_string()];
            let secs = most_declared(&paths, &names, "timeout", 1..=3600);
            assert!(secs.is_some_and(|s| s > crate::run::DEFAULT_SCENARIO_TIMEOUT_SECS), "{name}: {secs:?}");
        }
        assert_eq!(most_declared(&paths, &["linux-status".to_string()], "l1-cpus", 1..=8), None);
    }
}
