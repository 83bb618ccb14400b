//! virtio devices seen by a real Linux guest under real KVM: disks read,
//! written, flushed and refused as configured, the RNG delivering, and the
//! negotiated feature bits exactly what the DMA contract and the device
//! specs say, flushed data surviving `kill -9` of dmavm. All scenarios
//! share one sandbox boot.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &["virtio-mmio", "virtio-mixed", "virtio-console", "virtio-durability"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

use common::value;

/// The sysfs `features` string (one char per bit, bit 0 first) with exactly
/// `bits` set.
fn feature_string(bits: &[u32]) -> String {
    (0..64).map(|i| if bits.contains(&i) { '1' } else { '0' }).collect()
}

// Feature bit numbers from the virtio 1.2 spec: 5.2.3 (block), 6 (reserved
// feature bits).
const BLK_F_SEG_MAX: u32 = 2;
const BLK_F_RO: u32 = 5;
const BLK_F_BLK_SIZE: u32 = 6;
const BLK_F_FLUSH: u32 = 9;
const F_INDIRECT_DESC: u32 = 28;
const F_EVENT_IDX: u32 = 29;
const F_VERSION_1: u32 = 32;
const F_ACCESS_PLATFORM: u32 = 33;

/// The disks-and-RNG check: reads, writes with FLUSH, read-only, capacity,
/// the RNG, a clean kernel log.
fn assert_disks_and_rng(r: &ScenarioResult, serial_order: &[(&str, &str)]) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(r, "vmm_status"), "0", "the guest powers off at the end: {r}");
    // Reads: the guest's checksum of the whole disk is the host file's.
    assert_eq!(value(r, "rand_sha"), value(r, "host_rand_sha"), "{r}");
    // Writes and FLUSH: what the guest wrote before powering off is in the file.
    assert_eq!(value(r, "scratch_written"), "1", "{r}");
    assert_eq!(value(r, "host_scratch_match"), "1", "{r}");
    // Read-only: refused in the guest, file unchanged.
    assert_eq!(value(r, "ro_write_refused"), "1", "{r}");
    assert_eq!(value(r, "host_ro_unchanged"), "1", "{r}");
    // Capacity of each disk (4 MiB, 2 MiB, 1 MiB files) in 512-byte sectors,
    // in the order the guest enumerated them.
    let disks: Vec<(&str, &str)> = r
        .output
        .iter()
        .filter_map(|l| l.strip_prefix("DMAVM disk="))
        .filter_map(|l| Some((l.split(" serial=").nth(1)?.split(' ').next()?, l.split("sectors=").nth(1)?)))
        .collect();
    assert_eq!(disks, serial_order, "{r}");
    // The RNG: the guest's hw_random core picked it and 1 MiB came out.
    assert_eq!(value(r, "hwrng"), "virtio_rng.0", "{r}");
    assert_eq!(value(r, "hwrng_bytes"), "1048576", "{r}");
    assert_eq!(value(r, "dmesg_bad"), "0", "{r}");
}

/// (device ID, parent device, negotiated features) of every virtio device,
/// in the guest's order.
fn virtio_devices(r: &ScenarioResult) -> Vec<(String, String, String)> {
    let field =
        |l: &str, key: &str| Some(l.split(&format!(" {key}=")).nth(1)?.split(' ').next()?.to_string());
    r.output
        .iter()
        .filter_map(|l| l.strip_prefix("DMAVM virtio="))
        .filter_map(|l| Some((field(l, "device")?, field(l, "parent")?, field(l, "features")?)))
        .collect()
}

fn expected_features() -> (String, String, String) {
    let ring = [F_INDIRECT_DESC, F_EVENT_IDX, F_VERSION_1, F_ACCESS_PLATFORM];
    let blk: Vec<u32> = [BLK_F_SEG_MAX, BLK_F_BLK_SIZE, BLK_F_FLUSH].iter().chain(&ring).copied().collect();
    let ro: Vec<u32> = blk.iter().chain(&[BLK_F_RO]).copied().collect();
    (feature_string(&blk), feature_string(&ro), feature_string(&ring))
}

fn expect(list: &[(&str, &str, &String)]) -> Vec<(String, String, String)> {
    list.iter().map(|(d, p, f)| (d.to_string(), p.to_string(), (*f).clone())).collect()
}

#[test]
fn mmio_disks_and_rng_do_what_the_guest_asks() -> Result<(), Error> {
    let r = scenario("virtio-mmio")?;
    assert_disks_and_rng(&r, &[("rand", "8192"), ("scratch", "4096"), ("ro", "2048")]);
    Ok(())
}

#[test]
fn mmio_features_negotiated_are_exactly_the_expected_ones() -> Result<(), Error> {
    let r = scenario("virtio-mmio")?;
    let (blk, ro, rng) = expected_features();
    // virtio0..2 are the disks in command-line order, virtio3 the RNG, each
    // bound through its ACPI LNRO0005 device.
    let expected = expect(&[
        ("0x0002", "LNRO0005:00", &blk),
        ("0x0002", "LNRO0005:01", &blk),
        ("0x0002", "LNRO0005:02", &ro),
        ("0x0004", "LNRO0005:03", &rng),
    ]);
    assert_eq!(virtio_devices(&r), expected, "{r}");
    Ok(())
}

#[test]
fn both_transports_at_once() -> Result<(), Error> {
    let r = scenario("virtio-mixed")?;
    // PCI disks enumerate first (vda, vdb), then the mmio one.
    assert_disks_and_rng(&r, &[("rand", "8192"), ("ro", "2048"), ("scratch", "4096")]);
    let (blk, ro, rng) = expected_features();
    let expected = expect(&[
        ("0x0002", "0000:00:01.0", &blk),
        ("0x0002", "0000:00:02.0", &ro),
        ("0x0004", "0000:00:03.0", &rng),
        ("0x0002", "LNRO0005:00", &blk),
    ]);
    assert_eq!(virtio_devices(&r), expected, "{r}");
    Ok(())
}

#[test]
fn virtio_console_carries_both_directions() -> Result<(), Error> {
    let r = scenario("virtio-console")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(&r, "hvc_read"), "ping-from-host", "host stdin reaches /dev/hvc0: {r}");
    assert_eq!(value(&r, "host_saw_guest_line"), "1", "/dev/hvc0 output reaches dmavm's stdout: {r}");
    assert_eq!(value(&r, "vmm_status"), "0", "{r}");
    Ok(())
}

#[test]
fn flushed_data_survives_sigkill_of_dmavm() -> Result<(), Error> {
    let r = scenario("virtio-durability")?;
    assert_eq!(r.status, 0, "{r}");
    // The guest treats the disk as having a volatile cache (FLUSH
    // negotiated), so its fsync sent at least one FLUSH, which completed.
    assert_eq!(value(&r, "write_cache"), "write_back", "{r}");
    assert_ne!(value(&r, "flush_requests"), "0", "{r}");
    assert_eq!(value(&r, "flushed"), "1", "{r}");
    // The host killed dmavm on that line, with nothing else between...
    assert_eq!(value(&r, "host_saw_flushed"), "1", "{r}");
    assert_eq!(value(&r, "vmm_status"), "137", "dmavm ended by SIGKILL (128 + 9): {r}");
    // ...and the file holds what the guest flushed.
    assert_eq!(value(&r, "host_flushed_match"), "1", "{r}");
    Ok(())
}
