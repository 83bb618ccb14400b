//! The virtio-net guest checks both architectures' suites share: what the
//! net check (resources/guest/checks/net.sh, tests/scenarios/net-lib.sh)
//! must show for a device that bypasses the IOMMU and for one it
//! translates.

use dmavm_tests::ScenarioResult;

use super::{counters, devices_behind_iommu, number, value};

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
pub fn feature_string(bits: &[u32]) -> String {
    (0..64).map(|i| if bits.contains(&i) { '1' } else { '0' }).collect()
}

/// The features the guest's virtio_net negotiates with dmavm's device.
pub fn expected_features(translated: bool) -> String {
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
pub fn net_device(r: &ScenarioResult) -> (String, String) {
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
pub struct NetStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub backend_errors: u64,
}

pub fn net_stats(r: &ScenarioResult) -> NetStats {
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
pub fn assert_traffic(r: &ScenarioResult) {
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

pub fn assert_direct(r: &ScenarioResult, parent: &str) {
    assert_traffic(r);
    assert_eq!(net_device(r), (parent.to_string(), expected_features(false)), "{r}");
    assert_eq!(
        devices_behind_iommu(r),
        [(parent.to_string(), "none".to_string(), false)],
        "outside every iommu group: {r}"
    );
}

pub fn assert_translated(r: &ScenarioResult, parent: &str) {
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
