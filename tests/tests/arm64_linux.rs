//! arm64 Linux under dmavm's arm64 back end, in the arm64 sandbox (an arm64
//! L1 Linux under qemu-system-aarch64 TCG with KVM in VHE mode): Debian's
//! arm64 cloud kernel boots to its init on the device tree dmavm generates,
//! with 1 and 2 vCPUs, its console on the 16550A, and powers off through
//! PSCI with status 0; virtio-mmio and virtio-pci (MSI-X through the ITS)
//! disks and RNG, translated by a virtio-iommu or bypassing it as declared;
//! and a translated disk declared `coherent=off` really set up as a
//! non-coherent device by the guest, unlike a `coherent=on` one; virtio-net
//! on a TAP in a network namespace of L1, on virtio-mmio bypassing every
//! IOMMU and on virtio-pci translated by the virtio-iommu. One L1
//! boot for the whole binary; the L1 carries the static aarch64 dmavm,
//! cross-built from this tree by the test bed
//! (`resources/testbed-arm64/build-dmavm.sh`). Fails (never skips) when the
//! sandbox or the aarch64 dmavm is missing.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::net::{assert_direct, assert_translated};
use common::{counters, devices_behind_iommu, value, Counters};
use dmavm_tests::{arm64, Error, ScenarioResult};

/// Every scenario this test binary runs, in one arm64 L1 boot.
const ALL: &[&str] = &[
    "arm64-linux-1cpu",
    "arm64-linux-2cpu",
    "arm64-virtio-mmio",
    "arm64-virtio-pci",
    "arm64-coherency-on",
    "arm64-coherency-off",
    "arm64-coherency-direct-off",
    "arm64-net-mmio",
    "arm64-net-pci",
];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    let r = arm64::run_scenario(ALL, name)?;
    println!("dmavm-tests: test bed: {}", arm64::Arm64Sandbox::detect()?);
    println!("dmavm-tests: {name}: dmavm ran {} ms in L1", r.dmavm_value("vmm_ms").unwrap_or("?"));
    Ok(r)
}

/// The guest reached init with `cpus` CPUs online, a clean kernel log, and
/// powered off (PSCI SYSTEM_OFF: dmavm's status 0).
fn assert_booted(r: &ScenarioResult, cpus: &str, online: &str) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.testbed, arm64::TESTBED, "{r}");
    assert!(value(r, "kernel").ends_with("-cloud-arm64"), "{r}");
    assert_eq!(value(r, "cpus"), cpus, "{r}");
    assert_eq!(value(r, "online"), online, "{r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
    assert_eq!(value(r, "check"), "basic", "{r}");
    assert_eq!(value(r, "status"), "0", "the check passed: {r}");
    assert_eq!(value(r, "vmm_status"), "0", "poweroff -f ends dmavm with 0: {r}");
}

#[test]
fn boots_to_init_with_one_vcpu() -> Result<(), Error> {
    let r = scenario("arm64-linux-1cpu")?;
    assert_booted(&r, "1", "0");
    Ok(())
}

/// The secondary vCPU starts powered off and comes up through PSCI CPU_ON.
#[test]
fn boots_to_init_with_two_vcpus() -> Result<(), Error> {
    let r = scenario("arm64-linux-2cpu")?;
    assert_booted(&r, "2", "0-1");
    Ok(())
}

/// The virtio check's I/O: reads, a flushed write, a refused write, the RNG.
fn assert_io(r: &ScenarioResult) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "{r}");
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "{r}");
    assert_eq!(value(r, "scratch_written"), "1", "{r}");
    assert_eq!(value(r, "host_scratch_match"), "1", "{r}");
    assert_eq!(value(r, "ro_write_refused"), "1", "{r}");
    assert_eq!(value(r, "host_ro_unchanged"), "1", "{r}");
    assert_eq!(value(r, "hwrng_bytes"), "1048576", "{r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
}

/// `translated` devices in an iommu group with ACCESS_PLATFORM, and really
/// translated (dmavm's counters); `bypassing` in none, without it.
fn assert_scope(r: &ScenarioResult, translated: &[(&str, &str)], bypassing: &str) {
    let seen = devices_behind_iommu(r);
    let find = |parent: &str| {
        seen.iter().find(|(p, _, _)| p == parent).cloned().unwrap_or_else(|| panic!("no {parent}: {r}"))
    };
    for (parent, id) in translated {
        let (_, group, access_platform) = find(parent);
        assert_ne!(group, "none", "{parent} must be in an iommu group: {r}");
        assert!(access_platform, "{parent} must negotiate ACCESS_PLATFORM: {r}");
        let Counters { map, unmap, translations, faults, .. } = counters(r, id);
        assert!(map > 0 && unmap > 0 && translations > 0, "{id}: translated DMA: {r}");
        assert_eq!(faults, 0, "{id}: {r}");
    }
    let (_, group, access_platform) = find(bypassing);
    assert_eq!(group, "none", "the bypassing disk is in no iommu group: {r}");
    assert!(!access_platform, "the bypassing disk has no ACCESS_PLATFORM: {r}");
    assert!(r.dmavm_value("stats_ro").is_none(), "the bypassing disk is no endpoint: {r}");
}

/// virtio-mmio: the IOMMU at 0xa000000 (`iommu@a000000`), the disks rand,
/// scratch, ro and the RNG in the next windows; ro bypasses the IOMMU.
#[test]
fn virtio_mmio_devices_are_translated_or_bypass_as_declared() -> Result<(), Error> {
    let r = scenario("arm64-virtio-mmio")?;
    assert_io(&r);
    assert_eq!(value(&r, "hwrng"), "virtio_rng.0", "{r}");
    let translated = [("a001000.virtio", "rand"), ("a002000.virtio", "scratch"), ("a004000.virtio", "rng0")];
    assert_scope(&r, &translated, "a003000.virtio");
    Ok(())
}

/// virtio-pci on the `pci-host-ecam-generic` bridge, MSI-X through the
/// ITS: the IOMMU at 00:01.0, rand at 00:02.0 (translated), ro at 00:03.0
/// (bypassing, outside `iommu-map`), the RNG at 00:04.0; scratch on
/// virtio-mmio (`iommus`).
#[test]
fn virtio_pci_devices_use_msix_through_the_its() -> Result<(), Error> {
    let r = scenario("arm64-virtio-pci")?;
    assert_io(&r);
    assert_eq!(value(&r, "cpus"), "2", "{r}");
    let translated = [("0000:00:02.0", "rand"), ("0000:00:04.0", "rng0"), ("a000000.virtio", "scratch")];
    assert_scope(&r, &translated, "0000:00:03.0");
    Ok(())
}

/// What the coherency checks agree on: the disk read back whole, a clean
/// log, the device tree as generated (`iommus = <&viommu 0x10001>` on the
/// translated disk at 0xa001000, none on the bypassing one or the IOMMU).
fn assert_coherency_run(r: &ScenarioResult, coherent: &str) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "{r}");
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "{r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
    // phandle 4 (the virtio-iommu), endpoint 0x10001
    assert_eq!(value(r, "dt_virtio_a001000"), format!("coherent:{coherent},iommus:0000000400010001"), "{r}");
    assert_eq!(value(r, "dt_virtio_a002000"), "coherent:1,iommus:none", "{r}");
    assert_eq!(value(r, "dt_iommu_a000000"), "coherent:1,iommus:none", "{r}");
    let Counters { map, translations, faults, .. } = counters(r, "rand");
    assert!(map > 0 && translations > 0 && faults == 0, "{r}");
}

/// A translated disk declared coherent: the guest maps its rings cacheable,
/// never cleans caches for it and never bounces its buffers.
#[test]
fn a_coherent_translated_disk_is_set_up_cacheable() -> Result<(), Error> {
    let r = scenario("arm64-coherency-on")?;
    assert_coherency_run(&r, "1");
    assert_eq!(value(&r, "rand_prot"), "normal", "{r}");
    assert_eq!(value(&r, "rand_sync_for_device"), "0", "{r}");
    assert_eq!(value(&r, "swiotlb_hiwater"), "0", "{r}");
    Ok(())
}

/// The same disk declared `coherent=off` (no `dma-coherent`): the guest maps
/// its rings non-cacheable (MT_NORMAL_NC), cleans the cache before every
/// transfer and bounces its small buffers through swiotlb.
#[test]
fn a_non_coherent_translated_disk_is_set_up_non_cacheable() -> Result<(), Error> {
    let r = scenario("arm64-coherency-off")?;
    assert_coherency_run(&r, "0");
    assert_eq!(value(&r, "rand_prot"), "normal-nc", "{r}");
    let syncs: u64 = value(&r, "rand_sync_for_device").parse().unwrap_or(0);
    assert!(syncs > 0, "cache maintenance for every transfer: {r}");
    let bounced: u64 = value(&r, "swiotlb_hiwater").parse().unwrap_or(0);
    assert!(bounced > 0, "small buffers bounced: {r}");
    Ok(())
}

/// Without an IOMMU (dma-direct), `coherent=off` gives the same set-up.
#[test]
fn a_non_coherent_direct_disk_is_set_up_non_cacheable() -> Result<(), Error> {
    let r = scenario("arm64-coherency-direct-off")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(&r, "rand_sha"), value(&r, "host_rand_sha"), "{r}");
    assert_eq!(value(&r, "dt_virtio_a000000"), "coherent:0,iommus:none", "{r}");
    assert_eq!(value(&r, "rand_prot"), "normal-nc", "{r}");
    assert!(value(&r, "rand_sync_for_device").parse::<u64>().unwrap_or(0) > 0, "{r}");
    assert!(value(&r, "swiotlb_hiwater").parse::<u64>().unwrap_or(0) > 0, "{r}");
    Ok(())
}

/// virtio-net on virtio-mmio (the first window, no IOMMU,
/// `direct-ram-access=on`): the guest's interface up with the generated
/// MAC, a ping, the file down and up with matching checksums, no
/// ACCESS_PLATFORM, no iommu group.
#[test]
fn virtio_net_mmio_moves_data_both_ways() -> Result<(), Error> {
    assert_direct(&scenario("arm64-net-mmio")?, "a000000.virtio");
    Ok(())
}

/// virtio-net on virtio-pci behind the virtio-iommu at 00:01.0
/// (`iommu-map`), MSI-X through the ITS: the same traffic, every buffer
/// mapped by the guest and translated by dmavm.
#[test]
fn virtio_net_pci_translated_moves_data_both_ways() -> Result<(), Error> {
    assert_translated(&scenario("arm64-net-pci")?, "0000:00:02.0");
    Ok(())
}
