//! arm64 Linux under dmavm's arm64 back end, in the arm64 sandbox (an arm64
//! L1 Linux under qemu-system-aarch64 TCG with KVM in VHE mode): Debian's
//! arm64 cloud kernel boots to its init on the device tree dmavm generates,
//! with 1 and 2 vCPUs, its console on the 16550A, and powers off through
//! PSCI with status 0. One L1 boot for the whole binary; the L1 carries the
//! static aarch64 dmavm (`resources/testbed-arm64/build-dmavm.sh`, or set
//! `DMAVM_ARM64_BUILD_DMAVM=1`). Fails (never skips) when the sandbox or
//! the aarch64 dmavm is missing.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

use dmavm_tests::{arm64, Error, ScenarioResult};

/// Every scenario this test binary runs, in one arm64 L1 boot.
const ALL: &[&str] = &["arm64-linux-1cpu", "arm64-linux-2cpu"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    let r = arm64::run_scenario(ALL, name)?;
    println!("dmavm-tests: test bed: {}", arm64::Arm64Sandbox::detect()?);
    println!("dmavm-tests: {name}: dmavm ran {} ms in L1", r.dmavm_value("vmm_ms").unwrap_or("?"));
    Ok(r)
}

fn value<'a>(r: &'a ScenarioResult, key: &str) -> &'a str {
    r.dmavm_value(key).unwrap_or_else(|| panic!("no DMAVM {key}=: {r}"))
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
