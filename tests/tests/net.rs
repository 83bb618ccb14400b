//! virtio-net seen by a real Linux guest under real KVM, its TAP in a
//! network namespace made inside the host (the test bed's L1 or this
//! machine): the guest's interface comes up with the MAC dmavm generated,
//! pings the host side and moves a file down and back up with matching
//! checksums, on virtio-mmio and virtio-pci, bypassing the IOMMU and
//! translated by it with the guest's lazy and strict invalidation. The
//! negotiated features are exactly the expected ones, ACCESS_PLATFORM and
//! an iommu group exactly when translated, and `--stats` shows the
//! translations. 64 MiB go each way in every scenario. One sandbox boot
//! for all scenarios.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::net::{assert_direct, assert_translated};
use dmavm_tests::{Error, ScenarioResult};

const ALL: &[&str] = &["net-mmio", "net-pci", "net-iommu-lazy", "net-iommu-strict", "net-iommu-mmio"];

/// A scenario's result, once it is known to have moved 64 MiB each way
/// (net-lib.sh's default; the assertions compare with what the host made).
fn scenario(name: &str) -> Result<ScenarioResult, Error> {
    let r = common::scenario(ALL, name)?;
    assert_eq!(common::number(&r, "host_data_bytes"), 64 << 20, "{r}");
    Ok(r)
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
