//! The virtual IOMMU seen by a real Linux guest under real KVM: translated
//! devices in iommu groups with ACCESS_PLATFORM, their I/O correct and
//! really translated (dmavm's counters), a bypassing device outside every
//! group, without ACCESS_PLATFORM and never translated; in the guest's
//! lazy and strict invalidation modes and in passthrough; with the
//! virtio-iommu and with an emulated Intel VT-d unit (whose page-walk
//! coherency decides whether the guest flushes its page-table updates),
//! also with a translated and a bypassing PCI host bridge side by side.
//! One sandbox boot.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &[
    "iommu-lazy",
    "iommu-strict",
    "iommu-passthrough",
    "iommu-mmio",
    "iommu-mixed-reject",
    "iommu-mixed-allow",
    "vtd-strict",
    "vtd-lazy",
    "vtd-passthrough",
    "vtd-noncoherent",
    "vtd-bridges",
];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

use common::{counters, devices_behind_iommu, value};

/// Where the guest finds each device (its parent in sysfs).
struct Placement {
    /// Translated devices.
    translated: [&'static str; 3],
    /// The bypassing disk.
    bypassing: &'static str,
}

/// The IOMMU at 00:01.0; rand 00:02.0, ro (bypassing) 00:03.0, the RNG
/// 00:04.0; scratch on virtio-mmio.
const IOMMU_ON_PCI: Placement =
    Placement { translated: ["0000:00:02.0", "0000:00:04.0", "LNRO0005:00"], bypassing: "0000:00:03.0" };

/// The IOMMU the first virtio-mmio device (LNRO0005:00); rand 00:01.0, ro
/// (bypassing) 00:02.0; scratch and the RNG the next virtio-mmio devices.
const IOMMU_ON_MMIO: Placement =
    Placement { translated: ["0000:00:01.0", "LNRO0005:01", "LNRO0005:02"], bypassing: "0000:00:02.0" };

fn assert_io_and_scope(r: &ScenarioResult, placement: &Placement) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "{r}");
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "translated PCI disk reads: {r}");
    assert_eq!(value(r, "host_scratch_match"), "1", "translated mmio disk writes: {r}");
    assert_eq!(value(r, "ro_write_refused"), "1", "{r}");
    assert_eq!(value(r, "host_ro_unchanged"), "1", "{r}");
    assert_eq!(value(r, "hwrng_bytes"), "1048576", "translated RNG: {r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
    let seen = devices_behind_iommu(r);
    let find = |parent: &str| {
        seen.iter().find(|(p, _, _)| p == parent).cloned().unwrap_or_else(|| panic!("no {parent}: {r}"))
    };
    for translated in placement.translated {
        let (_, group, access_platform) = find(translated);
        assert_ne!(group, "none", "{translated} must be in an iommu group: {r}");
        assert!(access_platform, "{translated} must negotiate ACCESS_PLATFORM: {r}");
    }
    let (_, group, access_platform) = find(placement.bypassing);
    assert_eq!(group, "none", "the bypassing disk is in no iommu group: {r}");
    assert!(!access_platform, "the bypassing disk has no ACCESS_PLATFORM: {r}");
    // The bypassing disk is not an endpoint: dmavm has no counters for it.
    assert!(r.dmavm_value("stats_ro").is_none(), "{r}");
}

fn assert_translated(r: &ScenarioResult) {
    for device in ["rand", "scratch", "rng0"] {
        let common::Counters { map, unmap, translations, faults, .. } = counters(r, device);
        assert!(map > 0 && unmap > 0, "{device}: the guest mapped and unmapped DMA buffers: {r}");
        assert!(translations > 0, "{device}: its accesses were translated: {r}");
        assert_eq!(faults, 0, "{device}: {r}");
    }
}

#[test]
fn lazy_invalidation_translates_and_bypasses_as_declared() -> Result<(), Error> {
    let r = scenario("iommu-lazy")?;
    assert_io_and_scope(&r, &IOMMU_ON_PCI);
    assert_translated(&r);
    Ok(())
}

#[test]
fn strict_invalidation_translates_and_bypasses_as_declared() -> Result<(), Error> {
    let r = scenario("iommu-strict")?;
    assert_io_and_scope(&r, &IOMMU_ON_PCI);
    assert_translated(&r);
    Ok(())
}

#[test]
fn passthrough_attaches_to_the_bypass_domain() -> Result<(), Error> {
    let r = scenario("iommu-passthrough")?;
    assert_io_and_scope(&r, &IOMMU_ON_PCI);
    for device in ["rand", "scratch", "rng0"] {
        let common::Counters { map, unmap, faults, .. } = counters(&r, device);
        assert_eq!((map, unmap, faults), (0, 0, 0), "{device}: identity domain, no MAP/UNMAP: {r}");
    }
    Ok(())
}

#[test]
fn iommu_on_virtio_mmio_translates_pci_and_mmio_devices() -> Result<(), Error> {
    let r = scenario("iommu-mmio")?;
    assert_io_and_scope(&r, &IOMMU_ON_MMIO);
    assert_translated(&r);
    Ok(())
}

/// Both disks read back the host's data through virtio-blk, each in an
/// iommu group of its own, then both went into one VFIO container.
fn assert_mixed_coherency_guest(r: &ScenarioResult) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "{r}");
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "coherent disk: {r}");
    assert_eq!(value(r, "rand1_sha"), value(r, "host_rand1_sha"), "non-coherent disk: {r}");
    assert_eq!(value(r, "vfio_rand_bdf"), "0000:00:02.0", "{r}");
    assert_eq!(value(r, "vfio_rand1_bdf"), "0001:00:01.0", "{r}");
    assert_ne!(value(r, "vfio_rand_group"), value(r, "vfio_rand1_group"), "{r}");
    assert_eq!(value(r, "vfio_container"), "ok", "one container holds both groups: {r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
}

#[test]
fn mixed_coherency_reject_keeps_coherent_and_noncoherent_apart() -> Result<(), Error> {
    let r = scenario("iommu-mixed-reject")?;
    assert_mixed_coherency_guest(&r);
    // VFIO offered the second group (rand1, coherent=off) the first one's
    // domain; dmavm refused, the kernel gave it a domain of its own, and
    // the container's mapping reached both domains.
    let (coherent, noncoherent) = (counters(&r, "rand"), counters(&r, "rand1"));
    assert_eq!(coherent.refused_attach, 0, "{r}");
    assert_eq!(noncoherent.refused_attach, 1, "{r}");
    assert!(coherent.map > 0 && noncoherent.map > 0 && noncoherent.faults == 0, "{r}");
    Ok(())
}

#[test]
fn mixed_coherency_allow_lets_the_guest_share_a_domain() -> Result<(), Error> {
    let r = scenario("iommu-mixed-allow")?;
    assert_mixed_coherency_guest(&r);
    assert_eq!(counters(&r, "rand").refused_attach, 0, "{r}");
    assert_eq!(counters(&r, "rand1").refused_attach, 0, "{r}");
    Ok(())
}

/// Under `--iommu type=vtd` no IOMMU device takes a slot: rand 00:01.0,
/// scratch 00:02.0, ro (bypassing) 00:03.0, the RNG 00:04.0.
const VTD_ON_PCI: Placement =
    Placement { translated: ["0000:00:01.0", "0000:00:02.0", "0000:00:04.0"], bypassing: "0000:00:03.0" };

/// dmavm's `--stats` counters of one VT-d source ID, as the scenario
/// library's `report_vtd_stats` reports them.
#[derive(Debug, Clone, Copy)]
struct VtdCounters {
    translations: u64,
    invalidations: u64,
    faults: u64,
    untranslated: u64,
}

fn vtd_counters(r: &ScenarioResult, device: &str) -> VtdCounters {
    let v = value(r, &format!("vtd_{device}"));
    let n: Vec<u64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
    match n[..] {
        [translations, _misses, _context_misses, invalidations, faults, untranslated] => {
            VtdCounters { translations, invalidations, faults, untranslated }
        }
        _ => panic!("bad VT-d counters {v}: {r}"),
    }
}

/// The guest's intel-iommu drove the unit: one unit registered, no DMAR
/// fault or invalidation error logged, the devices' I/O correct and in
/// scope as declared, every translated device's DMA translated (none
/// before the guest enabled translation) and its caches invalidated.
fn assert_vtd_guest(r: &ScenarioResult) {
    assert_io_and_scope(r, &VTD_ON_PCI);
    assert_eq!(value(r, "dmar_units"), "1", "{r}");
    assert_eq!(value(r, "dmar_bad"), "0", "{r}");
    assert_eq!(
        value(r, "dmar_structures"),
        "0000[00:01.0,00:02.0,00:04.0]",
        "one DRHD, segment 0's, naming exactly the translated functions: {r}"
    );
    assert!(r.dmavm_value("vtd_ro").is_none(), "the bypassing disk is no source ID of the unit: {r}");
    for device in ["rand", "scratch", "rng0"] {
        let c = vtd_counters(r, device);
        assert!(c.translations > 0, "{device}: its accesses were translated: {r}");
        assert!(c.invalidations > 0, "{device}: the guest invalidated its caches: {r}");
        assert_eq!((c.faults, c.untranslated), (0, 0), "{device}: {r}");
    }
}

#[test]
fn vtd_strict_invalidation_translates_and_bypasses_as_declared() -> Result<(), Error> {
    let r = scenario("vtd-strict")?;
    assert_vtd_guest(&r);
    assert_eq!(value(&r, "clflush"), "0", "page walks coherent: no flush of page-table updates: {r}");
    Ok(())
}

#[test]
fn vtd_lazy_invalidation_translates_and_bypasses_as_declared() -> Result<(), Error> {
    let r = scenario("vtd-lazy")?;
    assert_vtd_guest(&r);
    assert_eq!(value(&r, "clflush"), "0", "page walks coherent: no flush of page-table updates: {r}");
    Ok(())
}

#[test]
fn vtd_passthrough_uses_pass_through_contexts() -> Result<(), Error> {
    let r = scenario("vtd-passthrough")?;
    assert_vtd_guest(&r);
    Ok(())
}

#[test]
fn vtd_noncoherent_page_walks_make_the_guest_flush_its_updates() -> Result<(), Error> {
    let r = scenario("vtd-noncoherent")?;
    assert_vtd_guest(&r);
    let flushes = common::number(&r, "clflush");
    assert!(flushes > 0, "ECAP.C = 0: the guest flushes each page-table update: {r}");
    Ok(())
}

/// Bridge "safe" (segment 2) translated, with rand at 0002:00:01.0; bridge
/// "fast" (segment 1, direct-ram-access=on) bypassing, with rand1 at
/// 0001:00:01.0; nothing on segment 0.
#[test]
fn vtd_with_a_bypassing_bridge_declares_and_translates_only_the_other() -> Result<(), Error> {
    let r = scenario("vtd-bridges")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(&r, "vmm_status"), "0", "the guest powers off at the end: {r}");
    assert_eq!(value(&r, "rand_sha"), value(&r, "host_rand_sha"), "translated disk: {r}");
    assert_eq!(value(&r, "rand1_sha"), value(&r, "host_rand1_sha"), "bypassing disk: {r}");
    assert_eq!(value(&r, "dmesg_bad"), "0", "{r}");
    assert_eq!(value(&r, "dmar_bad"), "0", "{r}");
    assert_eq!(value(&r, "dmar_units"), "1", "{r}");
    assert_eq!(
        value(&r, "dmar_structures"),
        "0002[00:01.0]",
        "a DRHD for the translated segment only, naming its disk: {r}"
    );
    let seen = devices_behind_iommu(&r);
    let find = |parent: &str| {
        seen.iter().find(|(p, _, _)| p == parent).cloned().unwrap_or_else(|| panic!("no {parent}: {r}"))
    };
    let (_, group, access_platform) = find("0002:00:01.0");
    assert_ne!(group, "none", "the translated bridge's disk is in an iommu group: {r}");
    assert!(access_platform, "the translated bridge's disk negotiates ACCESS_PLATFORM: {r}");
    let (_, group, access_platform) = find("0001:00:01.0");
    assert_eq!(group, "none", "the bypassing bridge's disk is in no iommu group: {r}");
    assert!(!access_platform, "the bypassing bridge's disk has no ACCESS_PLATFORM: {r}");
    let c = vtd_counters(&r, "rand");
    assert!(c.translations > 0 && c.invalidations > 0, "rand is translated: {r}");
    assert_eq!((c.faults, c.untranslated), (0, 0), "rand: {r}");
    assert!(r.dmavm_value("vtd_rand1").is_none(), "the bypassing disk is no source ID of the unit: {r}");
    Ok(())
}
