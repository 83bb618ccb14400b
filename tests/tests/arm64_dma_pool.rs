//! Restricted DMA pools on arm64 guests, in the arm64 sandbox.
//!
//! The proof that dmavm enforces a pool: a disk confined to one, with the
//! device tree naming the pool on no device (the test-only
//! `DMAVM_TEST_UNDECLARED_POOLS=1`), so that the guest hands it rings and
//! buffers anywhere in RAM. dmavm refuses them and counts the refusals, the
//! disk's image is untouched, and a disk without a pool next to it works.
//!
//! And the guest bouncing through its pools. Debian's 6.12 arm64 kernels
//! (cloud and generic flavours) are built with `CONFIG_DMA_RESTRICTED_POOL`
//! unset, so they reserve a `restricted-dma-pool` region but never bounce
//! through it (`of_dma_set_restricted_buffer()` is compiled out): that
//! scenario boots the pool kernel, Debian's 6.12 source configured with it
//! (`resources/guest/arm64/build-pool-kernel.sh`, built by the test bed
//! when it is not cached).
//!
//! One L1 boot per test (each has its own scenario list). Fails (never
//! skips) when the sandbox or the aarch64 dmavm is missing.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::{number, value};
use dmavm_tests::{arm64, Error, ScenarioResult};

fn scenario(all: &[&str], name: &str) -> Result<ScenarioResult, Error> {
    let r = arm64::run_scenario(all, name)?;
    println!("dmavm-tests: test bed: {}", arm64::Arm64Sandbox::detect()?);
    println!("dmavm-tests: {name}: dmavm ran {} ms in L1", r.dmavm_value("vmm_ms").unwrap_or("?"));
    Ok(r)
}

/// `(inside, refused)` of pool device `id` (`DMAVM pool_<id>=`).
fn pool_counters(r: &ScenarioResult, id: &str) -> (u64, u64) {
    let v = value(r, &format!("pool_{id}"));
    match v.split_once(',').map(|(a, b)| (a.parse::<u64>(), b.parse::<u64>())) {
        Some((Ok(inside), Ok(refused))) => (inside, refused),
        _ => panic!("bad pool counters {v}: {r}"),
    }
}

/// Whether the guest negotiated `VIRTIO_F_ACCESS_PLATFORM` with the virtio
/// device whose parent is `parent`.
fn access_platform(r: &ScenarioResult, parent: &str) -> bool {
    let line = r
        .output
        .iter()
        .find(|l| l.contains("DMAVM virtio=") && l.contains(&format!("parent={parent} ")))
        .unwrap_or_else(|| panic!("no virtio device below {parent}: {r}"));
    let features = line.rsplit("features=").next().unwrap_or("");
    features.as_bytes().get(common::F_ACCESS_PLATFORM) == Some(&b'1')
}

#[test]
fn a_pool_the_guest_does_not_use_is_enforced() -> Result<(), Error> {
    let r = scenario(&["arm64-dma-pool-undeclared"], "arm64-dma-pool-undeclared")?;
    // The refused disk never finishes its probe, so the guest resets
    // rather than powers off (the check's `ending=reset`): dmavm's status 3.
    assert_eq!(value(&r, "ending"), "reset", "{r}");
    assert_eq!(value(&r, "vmm_status"), "3", "{r}");
    assert_eq!(value(&r, "dmesg_bad"), "0", "{r}");
    // The pool is declared and reserved, but named on no device.
    assert_eq!(value(&r, "reserved"), "dma-pool@4fc00000", "{r}");
    assert_eq!(value(&r, "dt_virtio_a001000"), "memory-region:none", "{r}");
    assert_eq!(value(&r, "dt_virtio_a000000"), "memory-region:none", "{r}");
    // The disk without a pool reads back whole.
    assert_eq!(value(&r, "a000000_virtio_sha"), value(&r, "host_rand_sha"), "{r}");
    // The pooled disk negotiated ACCESS_PLATFORM (offered and required), but
    // its rings lie outside the pool: nothing of it ever reads back.
    assert!(access_platform(&r, "a001000.virtio"), "{r}");
    assert_ne!(value(&r, "a001000_virtio_sha"), value(&r, "host_rand_sha"), "{r}");
    let (_, refused) = pool_counters(&r, "pooled");
    assert!(refused > 0, "dmavm refused the pooled disk's accesses: {r}");
    assert_eq!(value(&r, "host_pooled_unchanged"), "1", "nothing was written: {r}");
    // The guest's kernel made no pool of its own for anything.
    assert_eq!(number(&r, "pools_created"), 0, "{r}");
    Ok(())
}

#[test]
fn disks_bounce_through_their_pools() -> Result<(), Error> {
    let r = scenario(&["arm64-dma-pool"], "arm64-dma-pool")?;
    assert_eq!(value(&r, "ending"), "poweroff", "{r}");
    assert_eq!(value(&r, "vmm_status"), "0", "{r}");
    assert_eq!(value(&r, "dmesg_bad"), "0", "{r}");
    // One pool for the bridge (placed first, at the top of 512 MiB), one for
    // the mmio disk below it.
    assert_eq!(number(&r, "pools_created"), 2, "{r}");
    assert_eq!(value(&r, "dt_virtio_a001000"), "memory-region:00000006", "{r}");
    assert_eq!(value(&r, "dt_virtio_a000000"), "memory-region:none", "{r}");
    // The bridge's pool on each of its functions' nodes.
    assert_eq!(value(&r, "dt_pcie_31000000"), "memory-region:none", "{r}");
    assert_eq!(value(&r, "dt_pcie_31000000_virtio_1"), "memory-region:00000005", "{r}");
    assert_eq!(value(&r, "dt_pcie_31000000_virtio_2"), "memory-region:00000005", "{r}");
    let host = value(&r, "host_rand_sha");
    for disk in ["a000000_virtio", "a001000_virtio", "0001_00_01_0", "0001_00_02_0"] {
        assert_eq!(value(&r, &format!("{disk}_sha")), host, "{disk}: {r}");
    }
    assert_eq!(value(&r, "a001000_virtio_written"), "1", "{r}");
    assert_eq!(value(&r, "host_pooled_match"), "1", "the pattern reached the image: {r}");
    // The guest bounced through both pools, and not through the default
    // swiotlb (every device is coherent).
    assert!(number(&r, "swiotlb_maps") > 0, "{r}");
    assert!(number(&r, "swiotlb_dma_pool_5fc00000_hiwater") > 0, "{r}");
    assert!(number(&r, "swiotlb_dma_pool_5f800000_hiwater") > 0, "{r}");
    assert_eq!(number(&r, "swiotlb_default_hiwater"), 0, "{r}");
    // Every access of the pool devices inside their pools, none refused.
    for id in ["pooled", "bridged0", "bridged1"] {
        let (inside, refused) = pool_counters(&r, id);
        assert!(inside > 0, "{id}: {r}");
        assert_eq!(refused, 0, "{id}: {r}");
    }
    assert!(access_platform(&r, "a001000.virtio"), "{r}");
    Ok(())
}
