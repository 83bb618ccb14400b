//! Real Linux guests (the Debian 6.12 cloud kernel and the project's
//! busybox initramfs) booted by dmavm under real KVM: both kernel formats,
//! 1 and 2 vCPUs, power-off, reboot, and a chosen status through the exit
//! device. All scenarios share one sandbox boot.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &[
    "linux-bzimage-1cpu",
    "linux-bzimage-2cpu",
    "linux-pvh-2cpu",
    "linux-poweroff",
    "linux-reboot",
    "linux-status",
];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

use common::number as value;

/// The guest ran its basic check: it saw `cpus` CPUs, all online, a memory
/// size consistent with `memory_mib`, a clean kernel log, and dmavm
/// returned the check's status 0.
fn assert_booted(r: &ScenarioResult, cpus: u64, memory_mib: u64) {
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.dmavm_value("check"), Some("basic"), "{r}");
    assert_eq!(value(r, "vmm_status"), 0, "{r}");
    assert_eq!(value(r, "cpus"), cpus, "{r}");
    let online = if cpus == 1 { "0".to_string() } else { format!("0-{}", cpus - 1) };
    assert_eq!(r.dmavm_value("online"), Some(online.as_str()), "{r}");
    // MemTotal is RAM minus what the kernel reserves for itself: well over
    // half of it, never more than all of it.
    let mem_kb = value(r, "mem_kb");
    assert!(mem_kb <= memory_mib * 1024 && mem_kb > memory_mib * 1024 / 2, "mem_kb={mem_kb}: {r}");
    assert_eq!(value(r, "dmesg_bad"), 0, "{r}");
}

/// dmavm's log (`--log-level info`) says it entered the bzImage `how`.
fn assert_entered(r: &ScenarioResult, how: &str) {
    let wanted = format!("bzImage entered through {how}");
    assert!(
        r.output.iter().any(|l| l.starts_with("dmavm: info: kernel ") && l.contains(&wanted)),
        "{wanted}: {r}"
    );
}

/// Debian's bzImage carries an ELF with a PVH entry note: dmavm
/// decompresses it and enters it through PVH.
#[test]
fn bzimage_boots_through_pvh_with_one_vcpu() -> Result<(), Error> {
    let r = scenario("linux-bzimage-1cpu")?;
    assert_booted(&r, 1, 256);
    assert_entered(&r, "PVH");
    Ok(())
}

/// The 64-bit boot protocol, which bzImages without a PVH note take,
/// forced with DMAVM_BZIMAGE_ENTRY=long64.
#[test]
fn bzimage_boots_through_the_64_bit_protocol_with_two_vcpus() -> Result<(), Error> {
    let r = scenario("linux-bzimage-2cpu")?;
    assert_booted(&r, 2, 512);
    assert_entered(&r, "the 64-bit boot protocol");
    Ok(())
}

#[test]
fn pvh_vmlinux_boots_with_two_vcpus() -> Result<(), Error> {
    assert_booted(&scenario("linux-pvh-2cpu")?, 2, 256);
    Ok(())
}

#[test]
fn guest_poweroff_ends_dmavm_with_zero() -> Result<(), Error> {
    let r = scenario("linux-poweroff")?;
    assert_eq!(r.dmavm_value("poweroff"), Some("requested"), "{r}");
    assert_eq!(value(&r, "vmm_status"), 0, "{r}");
    Ok(())
}

#[test]
fn guest_reboot_ends_dmavm_with_the_reset_status() -> Result<(), Error> {
    let r = scenario("linux-reboot")?;
    assert_eq!(r.dmavm_value("reboot"), Some("requested"), "{r}");
    assert_eq!(value(&r, "vmm_status"), 3, "{r}");
    Ok(())
}

#[test]
fn chosen_status_comes_back_through_the_exit_device() -> Result<(), Error> {
    let r = scenario("linux-status")?;
    assert_eq!(r.dmavm_value("chosen_status"), Some("7"), "{r}");
    assert_eq!(value(&r, "vmm_status"), 7, "{r}");
    Ok(())
}
