//! PCI host bridges as DMA domains, seen by a real Linux guest under real
//! KVM: each bridge a PCI segment of its own that the guest enumerates
//! (`0000:...`, `0001:...`), a bypassing bridge's devices outside every
//! iommu group and without ACCESS_PLATFORM while the translated segment's
//! are inside, a non-coherent bridge that still works, and the IOMMU on
//! segment 1 translating endpoints of both segments and of virtio-mmio (the
//! segment << 16 | BDF endpoint IDs). Disk contents checked against the
//! host's. All scenarios share one sandbox boot.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::{counters, value};
use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &["bridges-scope", "bridges-noncoherent", "bridges-iommu-segment1"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

/// `VIRTIO_F_ACCESS_PLATFORM`, virtio 1.2 section 6.
const F_ACCESS_PLATFORM: usize = 33;
/// The virtio-iommu's device ID (virtio 1.2 section 5.13).
const IOMMU_DEVICE: &str = "0x0017";

/// (iommu group, ACCESS_PLATFORM negotiated) of the virtio device whose
/// parent is `parent` (a PCI function `ssss:bb:dd.f` or `LNRO0005:nn`).
fn device(r: &ScenarioResult, parent: &str) -> (String, bool) {
    let field = |l: &str, key: &str| l.split(&format!(" {key}=")).nth(1)?.split(' ').next().map(String::from);
    r.output
        .iter()
        .filter_map(|l| l.strip_prefix("DMAVM virtio="))
        .find(|l| field(l, "parent").as_deref() == Some(parent))
        .and_then(|l| {
            let features = field(l, "features")?;
            Some((field(l, "group")?, features.as_bytes().get(F_ACCESS_PLATFORM) == Some(&b'1')))
        })
        .unwrap_or_else(|| panic!("no virtio device below {parent}: {r}"))
}

/// Ran to the end, every disk's contents as the host has them, a clean log.
fn assert_io(r: &ScenarioResult) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "the guest powers off at the end: {r}");
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "{r}");
    assert_eq!(value(r, "rand1_sha"), value(r, "host_rand1_sha"), "{r}");
    assert_eq!(value(r, "host_scratch_match"), "1", "writes and FLUSH: {r}");
    assert_eq!(value(r, "ro_write_refused"), "1", "{r}");
    assert_eq!(value(r, "host_ro_unchanged"), "1", "{r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
}

/// The PCI functions the guest enumerated.
fn pci_devices(r: &ScenarioResult) -> Vec<&str> {
    value(r, "pci_devices").split(',').collect()
}

fn assert_translated(r: &ScenarioResult, parent: &str) {
    let (group, access_platform) = device(r, parent);
    assert_ne!(group, "none", "{parent} must be in an iommu group: {r}");
    assert!(access_platform, "{parent} must negotiate ACCESS_PLATFORM: {r}");
}

fn assert_bypassing(r: &ScenarioResult, parent: &str) {
    let (group, access_platform) = device(r, parent);
    assert_eq!(group, "none", "{parent} bypasses the IOMMU: no iommu group: {r}");
    assert!(!access_platform, "{parent} bypasses the IOMMU: no ACCESS_PLATFORM: {r}");
}

/// Segment 0 translated (IOMMU 00:01.0, rand 00:02.0, ro 00:03.0), segment
/// 1 bypassing (rand1 01.0, scratch 02.0), each with its host bridge at 00.0.
fn assert_two_domains(r: &ScenarioResult) {
    assert_io(r);
    assert_eq!(
        pci_devices(r),
        [
            "0000:00:00.0",
            "0000:00:01.0",
            "0000:00:02.0",
            "0000:00:03.0",
            "0001:00:00.0",
            "0001:00:01.0",
            "0001:00:02.0"
        ],
        "{r}"
    );
    assert_translated(r, "0000:00:02.0");
    assert_translated(r, "0000:00:03.0");
    assert_bypassing(r, "0001:00:01.0");
    assert_bypassing(r, "0001:00:02.0");
    let common::Counters { map, translations, faults, .. } = counters(r, "rand");
    assert!(map > 0 && translations > 0 && faults == 0, "rand is translated: {r}");
    for bypassing in ["rand1", "scratch"] {
        assert!(r.dmavm_value(&format!("stats_{bypassing}")).is_none(), "{bypassing} is no endpoint: {r}");
    }
}

#[test]
fn a_bypassing_bridge_is_a_segment_outside_the_iommu() -> Result<(), Error> {
    let r = scenario("bridges-scope")?;
    assert_two_domains(&r);
    Ok(())
}

/// The `_CCA` 0 itself is checked host-side (vmm/tests/pci_bridges.rs):
/// x86 Linux accepts it and keeps using coherent DMA.
#[test]
fn a_non_coherent_bridge_still_enumerates_reads_and_writes() -> Result<(), Error> {
    let r = scenario("bridges-noncoherent")?;
    assert_two_domains(&r);
    Ok(())
}

#[test]
fn an_iommu_on_segment_1_translates_both_segments() -> Result<(), Error> {
    let r = scenario("bridges-iommu-segment1")?;
    assert_io(&r);
    assert_eq!(
        pci_devices(&r),
        ["0000:00:00.0", "0000:00:01.0", "0000:00:02.0", "0001:00:00.0", "0001:00:01.0", "0001:00:02.0"],
        "{r}"
    );
    let iommu = r.output.iter().find(|l| l.contains(&format!("device={IOMMU_DEVICE}")));
    assert!(iommu.is_some_and(|l| l.contains(" parent=0001:00:01.0 ")), "the IOMMU at 0001:00:01.0: {r}");
    assert_translated(&r, "0000:00:01.0");
    assert_translated(&r, "0001:00:02.0");
    assert_translated(&r, "LNRO0005:00");
    assert_bypassing(&r, "0000:00:02.0");
    for device in ["rand", "rand1", "scratch"] {
        let common::Counters { map, unmap, translations, faults, .. } = counters(&r, device);
        assert!(map > 0 && unmap > 0 && translations > 0, "{device} is translated: {r}");
        assert_eq!(faults, 0, "{device}: {r}");
    }
    assert!(r.dmavm_value("stats_ro").is_none(), "{r}");
    Ok(())
}
