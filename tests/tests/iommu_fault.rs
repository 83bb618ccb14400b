//! A translated device made to DMA where its IOMMU domain maps nothing,
//! from inside a real Linux guest under real KVM. Two translated virtio-pci
//! disks: `rand`, read before and after, and `victim`, which the guest hands
//! to vfio-pci and drives from user space (resources/guest/vfio-blk-fault.c)
//! with two pages mapped in a VFIO container of its own:
//! - a read whose data buffer lies wholly at an unmapped IOVA, and one whose
//!   buffer starts in a mapped, canary-filled page and runs past its end:
//!   both complete with `VIRTIO_BLK_S_IOERR`, the device stays usable
//!   (no `DEVICE_NEEDS_RESET`), the canary page is unchanged (no partial
//!   DMA), the IOMMU raises one fault per request that the guest's IOMMU
//!   driver logs naming the victim and the first untranslatable address,
//!   and dmavm's `--stats` count both against the victim's endpoint only;
//! - then a read into the mapped page on the same queue returns the disk's
//!   first sector, so the failures are the IOMMU's and not a mis-driven
//!   device;
//! - afterwards `rand` still reads its checksum, and the guest powers off
//!   cleanly with dmavm's exit status 0.
//!
//! Once through a virtio-iommu (the guest logs `page fault from EP <id> at
//! <address> [W]` from the fault event) and once through an emulated
//! Intel VT-d unit with `intel_iommu=on` (the guest's DMAR fault handler
//! logs `[DMA Write NO_PASID] Request device [bb:dd.f] fault addr
//! <address>` from the fault recording register). One sandbox boot.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &["iommu-fault", "iommu-fault-vtd"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

use common::{counters, value};

/// `VIRTIO_BLK_S_OK` and `VIRTIO_BLK_S_IOERR` (virtio 1.3 section 5.2.6).
const BLK_S_OK: &str = "0";
const BLK_S_IOERR: &str = "1";

/// ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK, neither FAILED nor
/// DEVICE_NEEDS_RESET (virtio 1.3 section 2.1).
const DEVICE_RUNNING: &str = "0xf";

/// The PCI requester ID (bus << 8 | device << 3 | function) of a sysfs
/// address `SSSS:BB:DD.F`.
fn requester_id(address: &str) -> u32 {
    let parse = || -> Option<u32> {
        let mut parts = address.rsplitn(3, ':');
        let (slot, bus) = (parts.next()?, parts.next()?);
        let (device, function) = slot.split_once('.')?;
        let n = |s: &str| u32::from_str_radix(s, 16).ok();
        Some(n(bus)? << 8 | n(device)? << 3 | n(function)?)
    };
    parse().unwrap_or_else(|| panic!("not a PCI address: {address}"))
}

/// The faults the guest's IOMMU driver logged, as the check reports them
/// (`DMAVM iommu_fault=<reason>,<device>,<address>,<access>`), sorted.
fn guest_faults(r: &ScenarioResult) -> Vec<String> {
    let mut faults: Vec<String> = r
        .dmavm_pairs()
        .into_iter()
        .filter(|(k, _)| *k == "iommu_fault")
        .map(|(_, v)| v.to_string())
        .collect();
    faults.sort();
    faults
}

/// What the guest and dmavm agree on whatever the IOMMU: the two requests
/// failed cleanly, the mapped one succeeded, nothing else was disturbed.
fn assert_contained(r: &ScenarioResult) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "the guest powered off cleanly: {r}");
    assert!(r.dmavm_value("fault_error").is_none(), "{r}");
    let host_rand = value(r, "host_rand_sha");
    assert_eq!(value(r, "rand_sha"), host_rand, "{r}");
    assert_eq!(value(r, "rand_sha_after"), host_rand, "the other disk still reads after the faults: {r}");
    let sector0 = value(r, "host_victim_sector0_sha");
    assert_eq!(value(r, "victim_sector0_sha"), sector0, "the victim through virtio-blk: {r}");
    for request in ["unmapped", "straddle"] {
        assert_eq!(value(r, &format!("fault_{request}_used")), "1", "{request}: the device returned it: {r}");
        assert_eq!(value(r, &format!("fault_{request}_status")), BLK_S_IOERR, "{request}: {r}");
        assert_eq!(value(r, &format!("fault_{request}_device_status")), DEVICE_RUNNING, "{request}: {r}");
    }
    assert_eq!(value(r, "fault_canary_intact"), "1", "no byte of the mapped page changed: {r}");
    assert_eq!(value(r, "fault_control_used"), "1", "{r}");
    assert_eq!(value(r, "fault_control_status"), BLK_S_OK, "{r}");
    assert_eq!(value(r, "fault_control_device_status"), DEVICE_RUNNING, "{r}");
    assert_eq!(value(r, "fault_control_sha"), sector0, "the mapped read returned the first sector: {r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
}

#[test]
fn virtio_iommu_fault_is_reported_to_the_guest_and_contained() -> Result<(), Error> {
    let r = scenario("iommu-fault")?;
    assert_contained(&r);
    // A PCI function on segment 0 is endpoint `bdf` (the VIOT's PCI range).
    let endpoint = requester_id(value(&r, "victim_bdf"));
    assert_eq!(value(&r, "stats_victim_endpoint"), format!("{endpoint:#x}"), "{r}");
    // A read request: the device writes guest memory, a write fault.
    let mut expected: Vec<String> = ["fault_unmapped_iova", "fault_straddle_iova"]
        .iter()
        .map(|key| format!("page,{endpoint},{},W", value(&r, key)))
        .collect();
    expected.sort();
    assert_eq!(guest_faults(&r), expected, "virtio-iommu logs one fault per request: {r}");
    assert_eq!(counters(&r, "victim").faults, 2, "{r}");
    assert_eq!(counters(&r, "rand").faults, 0, "{r}");
    Ok(())
}

#[test]
fn vtd_fault_is_reported_to_the_guest_and_contained() -> Result<(), Error> {
    let r = scenario("iommu-fault-vtd")?;
    assert_contained(&r);
    // The DMAR fault record names the requester as bus:device.function
    // and the faulting page (VT-d 4.x, 11.4.14); both addresses are
    // page-aligned, so the page is the address.
    let bdf = value(&r, "victim_bdf");
    let device = bdf.split_once(':').map_or(bdf, |(_, rest)| rest);
    assert_eq!(value(&r, "vtd_victim_source_id"), device, "{r}");
    // A read request: the device writes guest memory, a DMA Write fault.
    let mut expected: Vec<String> = ["fault_unmapped_iova", "fault_straddle_iova"]
        .iter()
        .map(|key| format!("dmar,{device},{},Write", value(&r, key)))
        .collect();
    expected.sort();
    assert_eq!(guest_faults(&r), expected, "the DMAR fault handler logs one fault per request: {r}");
    assert_eq!(vtd_faults(&r, "victim"), 2, "{r}");
    assert_eq!(vtd_faults(&r, "rand"), 0, "{r}");
    Ok(())
}

/// The fault count of `device` among its VT-d counters
/// (`DMAVM vtd_<device>=<translations>,<IOTLB misses>,<context-cache
/// misses>,<invalidations>,<faults>,<untranslated>`).
fn vtd_faults(r: &ScenarioResult, device: &str) -> u64 {
    let v = value(r, &format!("vtd_{device}"));
    v.split(',').nth(4).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad VT-d counters {v}: {r}"))
}

#[cfg(test)]
mod tests {
    use super::requester_id;

    #[test]
    fn requester_ids_of_sysfs_addresses() {
        assert_eq!(requester_id("0000:00:03.0"), 0x18);
        assert_eq!(requester_id("0000:01:1f.7"), 0x1ff);
    }
}
