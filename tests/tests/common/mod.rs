//! What the guest test binaries share: running a scenario from the binary's
//! list (one sandbox boot for all of them) and reading its DMAVM values.

// Not every test binary uses every helper.
#![allow(dead_code)]
// A missing value fails the test, with the scenario report.
#![allow(clippy::panic)]

use dmavm_tests::{run_scenario, Error, ScenarioResult, Testbed};

pub mod net;

/// The result of `name`, from one shared run of `all`, after printing which
/// test bed ran it (visible with `--nocapture` or on failure). The run
/// comes first: it installs missing packages, which detection may need.
pub fn scenario(all: &[&str], name: &str) -> Result<ScenarioResult, Error> {
    let r = run_scenario(all, name)?;
    println!("dmavm-tests: test bed: {}", Testbed::detect()?);
    Ok(r)
}

/// The value of `DMAVM key=`; a missing key fails the test with the whole
/// scenario report.
pub fn value<'a>(r: &'a ScenarioResult, key: &str) -> &'a str {
    r.dmavm_value(key).unwrap_or_else(|| panic!("no DMAVM {key}=: {r}"))
}

/// The numeric value of `DMAVM key=`.
pub fn number(r: &ScenarioResult, key: &str) -> u64 {
    value(r, key).parse().unwrap_or_else(|_| panic!("DMAVM {key}= is not a number: {r}"))
}

/// dmavm's `--stats` counters of one IOMMU endpoint, as the scenario
/// library's `report_iommu_stats` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub map: u64,
    pub unmap: u64,
    pub translations: u64,
    pub misses: u64,
    pub faults: u64,
    pub refused_attach: u64,
}

/// The counters of `device` (`DMAVM stats_<device>=...`).
pub fn counters(r: &ScenarioResult, device: &str) -> Counters {
    let v = value(r, &format!("stats_{device}"));
    let n: Vec<u64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
    match n[..] {
        [map, unmap, translations, misses, faults, refused_attach] => {
            Counters { map, unmap, translations, misses, faults, refused_attach }
        }
        _ => panic!("bad counters {v}: {r}"),
    }
}

/// `VIRTIO_F_ACCESS_PLATFORM`, virtio 1.2 section 6.
pub const F_ACCESS_PLATFORM: usize = 33;

/// (parent device, iommu group, ACCESS_PLATFORM negotiated) of every virtio
/// device the virtio check listed (`DMAVM virtio=...`), in the guest's
/// order, the IOMMU itself (device 0x0017) left out.
pub fn devices_behind_iommu(r: &ScenarioResult) -> Vec<(String, String, bool)> {
    let field =
        |l: &str, key: &str| Some(l.split(&format!(" {key}=")).nth(1)?.split(' ').next()?.to_string());
    r.output
        .iter()
        .filter_map(|l| l.strip_prefix("DMAVM virtio="))
        .filter(|l| !l.contains("device=0x0017"))
        .filter_map(|l| {
            let features = field(l, "features")?;
            Some((
                field(l, "parent")?,
                field(l, "group")?,
                features.as_bytes().get(F_ACCESS_PLATFORM) == Some(&b'1'),
            ))
        })
        .collect()
}
