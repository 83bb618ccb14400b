//! What a guest can make the IOMMU allocate, driven past its bound: domains
//! (at most one per endpoint, whatever IDs the guest uses) and mappings
//! (`max_mappings`, then `S_NOMEM`) with the host memory they cost. The
//! fault queue's and the IOTLBs' bounds are tested in `translation.rs`
//! (`faults_wait_for_event_buffers_and_are_bounded`,
//! `iotlbs_stay_within_their_budget_for_any_number_of_endpoints`).

use std::process::Command;

use crate::config::{IommuConfig, DEFAULT_IOTLB_ENTRIES, DEFAULT_MAX_MAPPINGS};
use crate::device::{execute, Reply, IOMMU_FEATURES};
use crate::iommu_state::IommuState;
use crate::request::{Request, Status, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};
use crate::sync::read;
use crate::test_utils::*;

const RW: u32 = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
const S_OK: u8 = Status::Ok as u8;

/// The domain ID range is 32 bits wide, but a domain exists only while an
/// endpoint is attached to it (ATTACH moves the endpoint and frees the
/// domain it leaves empty, with its mappings), so a guest cycling through
/// thousands of distinct IDs never holds more domains than endpoints.
#[test]
fn domains_never_outnumber_endpoints() {
    const ENDPOINTS: u32 = 8;
    const ATTACHES: u32 = 20_000;
    let ids: Vec<u32> = (0..ENDPOINTS).collect();
    let mut h = Harness::with(IommuConfig::default(), &ids, &[], IOMMU_FEATURES);
    let mut most = 0;
    for i in 0..ATTACHES {
        // Distinct IDs spread over the whole 32-bit range, u32::MAX last.
        let domain = u32::MAX - i.wrapping_mul(214_741);
        assert_eq!(h.status(&attach_req(domain, i % ENDPOINTS, 0)), S_OK, "attach {i} to {domain}");
        assert_eq!(h.status(&map_req(domain, 0, 0xfff, 0, RW)), S_OK, "map in {domain}");
        let state = read(&h.dev.shared.state);
        most = most.max(state.domains.len());
        assert!(state.domains.len() <= ENDPOINTS as usize, "{} domains after {i}", state.domains.len());
        assert_eq!(state.mapping_count, state.domains.len(), "freed domains' mappings go with them");
    }
    assert_eq!(most, ENDPOINTS as usize);
}

/// Resident memory of this process in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Upper bound on the host memory one mapping costs: its `BTreeMap` entry
/// (8-byte key, 24-byte [`crate::domain::Mapping`]) in leaves that
/// ascending inserts leave 6 or 7 entries full (384-byte allocations), and
/// its share of the internal nodes; 66.3 bytes measured at 2^20 mappings
/// (docs/benchmarks.md).
const MAPPING_BYTES: u64 = 68;
/// Upper bound on the host memory one IOTLB entry costs (a range-map entry
/// of `vm_memory::Iotlb`); about 96 bytes measured with the default budget
/// shared by 8 endpoints (docs/benchmarks.md).
const IOTLB_ENTRY_BYTES: u64 = 100;
/// What the process may grow by besides the two (allocator arenas, the
/// test harness's output).
const SLACK_BYTES: u64 = 4 << 20;

/// Set in the child process that runs the flood alone.
const CHILD: &str = "DMAVM_MAP_FLOOD_CHILD";
/// MAP requests to send (default twice `max_mappings`, so that half get
/// `S_NOMEM`).
const REQUESTS_VAR: &str = "DMAVM_MAP_FLOOD_REQUESTS";
/// `max_mappings` for the flood (default 2^17, small enough for a debug
/// `cargo test`; the full-size run sets 1048576, the default cap).
const CAP_VAR: &str = "DMAVM_MAP_FLOOD_MAX_MAPPINGS";

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| v.parse().unwrap())
}

/// `iotlb_entries` for the flood (default [`DEFAULT_IOTLB_ENTRIES`]; 0
/// measures the mappings alone).
const IOTLB_VAR: &str = "DMAVM_MAP_FLOOD_IOTLB_ENTRIES";

/// `(max_mappings, requests, iotlb_entries)` of the flood.
fn flood_sizes() -> (usize, usize, usize) {
    let cap = env_usize(CAP_VAR).unwrap_or(1 << 17);
    let iotlb = env_usize(IOTLB_VAR).unwrap_or(DEFAULT_IOTLB_ENTRIES);
    (cap, env_usize(REQUESTS_VAR).unwrap_or(2 * cap), iotlb)
}

/// A guest floods one domain, which 8 endpoints share, with MAP requests of
/// distinct 4 KiB ranges: the first `max_mappings` succeed, every later one
/// gets `S_NOMEM`, and the process grows by no more than `max_mappings`
/// mappings and the IOTLB budget cost. Run in a child process of its own,
/// so that other tests running in parallel do not count in its RSS.
#[test]
fn map_flood_keeps_memory_bounded() {
    if std::env::var_os(CHILD).is_some() {
        map_flood();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "tests::limits::map_flood_keeps_memory_bounded", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The harness prints the test's name before its first line.
    for line in stdout.lines().filter_map(|l| l.find("map flood:").map(|at| &l[at..])) {
        println!("{line}");
    }
    assert!(out.status.success(), "the flood failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("map flood: within"), "the flood did not run:\n{stdout}\n{stderr}");
}

fn map_flood() {
    const ENDPOINTS: u32 = 8;
    const DOMAIN: u32 = 1;
    let (cap, requests, iotlb_entries) = flood_sizes();
    let ids: Vec<u32> = (0..ENDPOINTS).collect();
    let config = IommuConfig { max_mappings: cap, iotlb_entries, ..IommuConfig::default() };
    let shared = IommuState::new(config, &ids, &[]).unwrap();
    let send = |req: Request| match execute(&shared, IOMMU_FEATURES, req, 0) {
        Reply::Status(s) => s,
        other => panic!("{other:?}"),
    };
    for &endpoint in &ids {
        let attach = Request::Attach { domain: DOMAIN, endpoint, flags: 0, reserved: [0; 4] };
        assert_eq!(send(attach), Status::Ok);
    }
    let before = rss_kib();
    let start = std::time::Instant::now();
    let (mut ok, mut nomem) = (0usize, 0usize);
    for i in 0..requests as u64 {
        // Distinct IOVA pages from 4 GiB up (clear of the MSI window), onto
        // guest pages that vary so that no two translations merge.
        let virt_start = (1 << 32) + i * 0x1000;
        let map = Request::Map {
            domain: DOMAIN,
            virt_start,
            virt_end: virt_start + 0xfff,
            phys_start: (i % 4096) * 0x2000,
            flags: RW,
        };
        match send(map) {
            Status::Ok => ok += 1,
            Status::NoMem => nomem += 1,
            other => panic!("MAP {i}: {other:?}"),
        }
    }
    let elapsed = start.elapsed();
    let grown = rss_kib().saturating_sub(before) * 1024;
    assert_eq!((ok, nomem), (cap.min(requests), requests.saturating_sub(cap)));
    assert_eq!(read(&shared.state).mapping_count, ok);
    let cached: usize = shared.endpoints.values().map(|ep| ep.cached_entries()).sum();
    assert!(cached <= iotlb_entries, "{cached} IOTLB entries");
    let bound = cap as u64 * MAPPING_BYTES + iotlb_entries as u64 * IOTLB_ENTRY_BYTES + SLACK_BYTES;
    println!(
        "map flood: {requests} MAP requests ({ok} OK, {nomem} S_NOMEM) to one domain of {ENDPOINTS} \
         endpoints, IOTLB budget {iotlb_entries}, in {elapsed:.2?}; RSS grew by {:.1} MiB ({:.1} bytes per mapping held, IOTLBs \
         included); bound {:.1} MiB",
        grown as f64 / f64::from(1 << 20),
        grown as f64 / ok.max(1) as f64,
        bound as f64 / f64::from(1 << 20),
    );
    assert!(grown <= bound, "RSS grew by {grown} bytes, more than {bound}");
    println!("map flood: within the bound");
}

/// The documented defaults are what the per-entry bounds above add up to
/// (`config.rs`): 68 MiB of mappings and 6.25 MiB of IOTLBs, under 75 MiB.
#[test]
fn default_caps_cost_under_75_mib() {
    let mappings = DEFAULT_MAX_MAPPINGS as u64 * MAPPING_BYTES;
    let iotlbs = DEFAULT_IOTLB_ENTRIES as u64 * IOTLB_ENTRY_BYTES;
    assert_eq!(mappings, 68 << 20);
    assert_eq!(iotlbs, 6_553_600);
    assert!(mappings + iotlbs < 75 << 20);
}
