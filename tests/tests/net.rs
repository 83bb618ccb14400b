//! virtio-net seen by a real Linux guest under real KVM, its TAP in a
//! network namespace made inside the host (the test bed's L1 or this
//! machine): the guest's interface comes up with the MAC dmavm generated,
//! pings the host side and moves a file down and back up with matching
//! checksums, on virtio-mmio and virtio-pci, bypassing the IOMMU and
//! translated by it with the guest's lazy and strict invalidation. The
//! negotiated features are exactly the expected ones, ACCESS_PLATFORM and
//! an iommu group exactly when translated, and `--stats` shows the
//! translations. One sandbox boot for all scenarios.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::{counters, devices_behind_iommu, number, value};
use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &["net-mmio", "net-pci", "net-iommu-lazy", "net-iommu-strict", "net-iommu-mmio"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

// Feature bits, virtio 1.2: 5.1.3 (network device), 6 (reserved).
const NET_F_CSUM: u32 = 0;
const NET_F_GUEST_CSUM: u32 = 1;
const NET_F_MAC: u32 = 5;
const NET_F_GUEST_TSO4: u32 = 7;
const NET_F_GUEST_TSO6: u32 = 8;
const NET_F_HOST_TSO4: u32 = 11;
const NET_F_HOST_TSO6: u32 = 12;
const NET_F_MRG_RXBUF: u32 = 15;
const NET_F_STATUS: u32 = 16;
const F_INDIRECT_DESC: u32 = 28;
const F_EVENT_IDX: u32 = 29;
const F_VERSION_1: u32 = 32;
const F_ACCESS_PLATFORM: u32 = 33;

/// The sysfs `features` string (one char per bit, bit 0 first) with exactly
/// `bits` set.
fn feature_string(bits: &[u32]) -> String {
    (0..64).map(|i| if bits.contains(&i) { '1' } else { '0' }).collect()
}

/// The features the guest's virtio_net negotiates with dmavm's device.
fn expected_features(translated: bool) -> String {
    let mut bits = vec![
        NET_F_CSUM,
        NET_F_GUEST_CSUM,
        NET_F_MAC,
        NET_F_GUEST_TSO4,
        NET_F_GUEST_TSO6,
        NET_F_HOST_TSO4,
        NET_F_HOST_TSO6,
        NET_F_MRG_RXBUF,
        NET_F_STATUS,
        F_INDIRECT_DESC,
        F_EVENT_IDX,
        F_VERSION_1,
    ];
    if translated {
        bits.push(F_ACCESS_PLATFORM);
    }
    feature_string(&bits)
}

/// (parent, features) of the virtio-net device (ID 1) the guest listed.
fn net_device(r: &ScenarioResult) -> (String, String) {
    let field =
        |l: &str, key: &str| Some(l.split(&format!(" {key}=")).nth(1)?.split(' ').next()?.to_string());
    let found: Vec<(String, String)> = r
        .output
        .iter()
        .filter_map(|l| l.strip_prefix("DMAVM virtio="))
        .filter(|l| l.contains(" device=0x0001 "))
        .filter_map(|l| Some((field(l, "parent")?, field(l, "features")?)))
        .collect();
    match &found[..] {
        [one] => one.clone(),
        _ => panic!("expected one virtio-net device, found {found:?}: {r}"),
    }
}

/// dmavm's counters of the network device `net0` (`--stats`).
struct NetStats {
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    tx_dropped: u64,
    backend_errors: u64,
}

fn net_stats(r: &ScenarioResult) -> NetStats {
    let v = value(r, "netstats_net0");
    let n: Vec<u64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
    match n[..] {
        [rx_frames, rx_bytes, _rx_dropped, _rx_stalls, tx_frames, tx_bytes, tx_dropped, backend_errors] => {
            NetStats { rx_frames, rx_bytes, tx_frames, tx_bytes, tx_dropped, backend_errors }
        }
        _ => panic!("bad net counters {v}: {r}"),
    }
}

/// What every net scenario must show: the guest's interface up with the
/// generated MAC, the ping answered, the file down and up intact, and
/// dmavm's counters at least the file's size each way.
fn assert_traffic(r: &ScenarioResult) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "the guest powers off at the end: {r}");
    assert_eq!(value(r, "net_driver"), "virtio_net", "{r}");
    // The address generated for id net0, the same in every run and
    // version (pinned in machine/src/mac.rs).
    assert_eq!(value(r, "net_mac"), "e6:3f:28:ba:a0:31", "{r}");
    assert_eq!(value(r, "net_carrier"), "1", "{r}");
    assert_eq!(value(r, "ping"), "1", "{r}");
    let (sha, bytes) = (value(r, "host_data_sha"), value(r, "host_data_bytes"));
    assert_eq!(value(r, "down_sha"), sha, "host to guest: {r}");
    assert_eq!(value(r, "down_bytes"), bytes, "{r}");
    assert_eq!(value(r, "host_up"), format!("{sha},{bytes}"), "guest to host, as the host got it: {r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
    let size = number(r, "host_data_bytes");
    let s = net_stats(r);
    assert!(s.rx_bytes >= size && s.rx_frames > 0, "host to guest counted: {r}");
    assert!(s.tx_bytes >= size && s.tx_frames > 0, "guest to host counted: {r}");
    assert_eq!((s.tx_dropped, s.backend_errors), (0, 0), "{r}");
}

fn assert_direct(r: &ScenarioResult, parent: &str) {
    assert_traffic(r);
    assert_eq!(net_device(r), (parent.to_string(), expected_features(false)), "{r}");
    assert_eq!(
        devices_behind_iommu(r),
        [(parent.to_string(), "none".to_string(), false)],
        "outside every iommu group: {r}"
    );
}

fn assert_translated(r: &ScenarioResult, parent: &str) {
    assert_traffic(r);
    assert_eq!(net_device(r), (parent.to_string(), expected_features(true)), "{r}");
    let seen = devices_behind_iommu(r);
    assert!(
        matches!(&seen[..], [(p, group, true)] if p == parent && group != "none"),
        "in an iommu group with ACCESS_PLATFORM: {seen:?}: {r}"
    );
    let c = counters(r, "net0");
    assert!(c.map > 0 && c.unmap > 0, "the guest maps and unmaps its buffers: {r}");
    // Every frame's buffers go through the IOMMU: far more translations
    // than the file has 64 KiB frames.
    let size = number(r, "host_data_bytes");
    assert!(c.translations > 2 * size / 65536, "translations counted: {r}");
    assert_eq!(c.faults, 0, "{r}");
}

#[test]
fn mmio_direct_moves_data_both_ways() -> Result<(), Error> {
    assert_direct(&scenario("net-mmio")?, "LNRO0005:00");
    Ok(())
}

#[test]
fn pci_direct_moves_data_both_ways() -> Result<(), Error> {
    assert_direct(&scenario("net-pci")?, "0000:00:01.0");
    Ok(())
}

#[test]
fn pci_translated_lazy_moves_data_both_ways() -> Result<(), Error> {
    // The IOMMU at 00:01.0, the network device at 00:02.0.
    assert_translated(&scenario("net-iommu-lazy")?, "0000:00:02.0");
    Ok(())
}

#[test]
fn pci_translated_strict_moves_data_both_ways() -> Result<(), Error> {
    let r = scenario("net-iommu-strict")?;
    assert_translated(&r, "0000:00:02.0");
    Ok(())
}

#[test]
fn mmio_translated_strict_moves_data_both_ways() -> Result<(), Error> {
    assert_translated(&scenario("net-iommu-mmio")?, "LNRO0005:00");
    Ok(())
}
