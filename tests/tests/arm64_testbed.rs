//! The arm64 sandbox works: an arm64 L1 Linux under qemu-system-aarch64 TCG
//! has KVM in VHE mode, and a tiny aarch64 VMM (kvm-probe) runs a guest in it
//! to an MMIO exit and a PSCI SYSTEM_OFF. One L1 boot for the whole binary.
//! Fails (never skips) when the sandbox cannot run.

use dmavm_tests::{arm64, Error, ScenarioResult};

/// Every scenario this test binary runs, in one arm64 L1 boot.
const ALL: &[&str] = &["arm64-kvm"];

fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    let r = arm64::run_scenario(ALL, name)?;
    println!("dmavm-tests: test bed: {}", arm64::Arm64Sandbox::detect()?);
    Ok(r)
}

/// /dev/kvm exists in L1, KVM runs in VHE mode at EL2, and an aarch64 VMM
/// gets a guest's MMIO write ('K' to 0x9000000) and its PSCI SYSTEM_OFF.
#[test]
fn arm64_l1_runs_kvm_guests() -> Result<(), Error> {
    let r = scenario("arm64-kvm")?;
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.testbed, arm64::TESTBED, "{r}");
    assert_eq!(r.dmavm_value("kvm"), Some("1"), "{r}");
    assert_eq!(r.dmavm_value("el2"), Some("1"), "{r}");
    assert_eq!(r.dmavm_value("kvm_mode"), Some("vhe"), "{r}");
    assert_eq!(r.dmavm_value("probe"), Some("ok"), "{r}");
    assert_eq!(r.dmavm_value("mmio_addr"), Some("0x9000000"), "{r}");
    assert_eq!(r.dmavm_value("mmio_data"), Some("0x4b"), "{r}");
    assert_eq!(r.dmavm_value("system_event"), Some("shutdown"), "{r}");
    // dmavm's arm64 back end needs an in-kernel GICv3
    assert_eq!(r.dmavm_value("vgic_v3"), Some("1"), "{r}");
    let exit_us: f64 = r.dmavm_value("exit_us").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    assert!(exit_us > 0.0, "no MMIO exit round-trip time: {r}");
    println!("dmavm-tests: arm64 L2 MMIO exit round trip {exit_us} us");
    Ok(())
}
