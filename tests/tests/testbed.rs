//! Runs guest scenarios through the test bed: on hardware KVM directly, else
//! in the nested QEMU sandbox. All tests here share one run of `ALL` (one
//! sandbox boot).

mod common;

use dmavm_tests::{Error, ScenarioResult};

/// Every scenario this test binary runs, in one sandbox boot.
const ALL: &[&str] = &["testbed-selftest", "payload-hello", "payload-smp", "payload-faults"];

/// The result of `name` from the shared run, after printing which test bed
/// ran it (visible with `--nocapture` or on failure). The run comes first: it
/// installs missing packages, which detection may need on a fresh machine.
fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    common::scenario(ALL, name)
}

/// The test bed itself works: /dev/kvm, the static dmavm and the guest images
/// are where scenarios expect them.
#[test]
fn testbed_selftest() -> Result<(), Error> {
    let r = scenario("testbed-selftest")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.dmavm_value("kvm"), Some("1"), "{r}");
    Ok(())
}

/// dmavm runs the hello payload, which prints its greeting and exits with 7.
#[test]
fn payload_hello() -> Result<(), Error> {
    let r = scenario("payload-hello")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.dmavm_value("payload_status"), Some("7"), "{r}");
    assert!(r.output.iter().any(|l| l.contains("hello from dmavm")), "{r}");
    Ok(())
}

/// Under real KVM, both vCPUs of a 2-vCPU VM run and see their own APIC IDs.
#[test]
fn payload_smp() -> Result<(), Error> {
    let r = scenario("payload-smp")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.dmavm_value("cpus_seen"), Some("2"), "{r}");
    Ok(())
}

/// Under real KVM, a triple fault fails the run with one line, and unmapped
/// MMIO is reported while the guest goes on.
#[test]
fn payload_faults() -> Result<(), Error> {
    let r = scenario("payload-faults")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.dmavm_value("triple_fault_status"), Some("1"), "{r}");
    assert_eq!(r.dmavm_value("mmio_warned"), Some("1"), "{r}");
    assert_eq!(r.dmavm_value("mmio_status"), Some("0"), "{r}");
    Ok(())
}
