//! Configuration checks: the DMA-contract rules (docs/architecture.md, "The DMA
//! contract") applied to a placed machine model, each finding with a
//! stable code, a one-line message naming the devices involved and an
//! explanation (`dmavm explain CODE`).
//!
//! One module for every rule so that `run` and `describe` report the same
//! code for the same configuration: the machine model keeps what each
//! device asked for (see [`Machine::new`]) and only these checks judge it.
//! Errors stop `run` before KVM is touched; warnings are printed and the
//! VM starts.

mod codes;
mod rules;

use std::fmt;

pub use codes::{Code, Severity};

use crate::{Arch, Machine};

/// One broken rule or risk in a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's stable code.
    pub code: Code,
    /// Error (the VM does not start) or warning.
    pub severity: Severity,
    /// One line naming the devices involved and saying why.
    pub message: String,
}

impl Finding {
    pub(super) fn new(code: Code, message: String) -> Self {
        Self { code, severity: code.severity(), message }
    }
}

impl fmt::Display for Finding {
    /// `[CODE] message`: what follows `dmavm: error: ` or `dmavm: warning: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// The firmware that tells the guest about the machine: what a guest can
/// know depends on it (DMA104).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// ACPI tables (x86_64): the VIOT declares the IOMMU's scope.
    Acpi,
    /// A device tree (aarch64): `iommus` and `iommu-map`.
    DeviceTree,
}

impl Firmware {
    /// The firmware of `arch`'s guests.
    pub fn of(arch: Arch) -> Self {
        match arch {
            Arch::X86_64 => Firmware::Acpi,
            Arch::Aarch64 => Firmware::DeviceTree,
        }
    }
}

/// Every finding of `machine` as its architecture's guests get it: errors
/// first, then warnings, each in code order.
pub fn check(machine: &Machine) -> Vec<Finding> {
    check_with(machine, Firmware::of(machine.arch))
}

/// Every finding of `machine` described to a guest by `firmware`.
pub fn check_with(machine: &Machine, firmware: Firmware) -> Vec<Finding> {
    let mut out = Vec::new();
    rules::bypassing_bridge_translated(machine, &mut out);
    rules::coherency_differs_from_bridge(machine, &mut out);
    rules::bypass_on_hotplug_bridge(machine, &mut out);
    rules::iommu_in_own_scope(machine, &mut out);
    rules::shared_addresses(machine, &mut out);
    rules::vtd_not_on_x86(machine, &mut out);
    rules::vtd_mmio_translated(machine, &mut out);
    rules::declared_noncoherent(machine, &mut out);
    let unused = rules::iommu_unused(machine, &mut out);
    rules::mixed_coherency(machine, &mut out);
    rules::vtd_unused(machine, &mut out);
    rules::vtd_noncoherent_walks(machine, &mut out);
    if firmware == Firmware::Acpi && !unused {
        rules::bypass_unknown_to_old_guests(machine, &mut out);
    }
    out.sort_by_key(|f| (f.severity, f.code));
    out
}

/// The line `run` refuses to start with: the first error, and how many
/// more there are (one line, as every failure of dmavm).
pub fn refusal(findings: &[Finding]) -> Option<String> {
    let mut errors = findings.iter().filter(|f| f.severity == Severity::Error);
    let first = errors.next()?;
    Some(match errors.count() {
        0 => first.to_string(),
        n => format!("{first} (and {n} more: `dmavm describe` with the same options lists every finding)"),
    })
}

#[cfg(test)]
mod tests;
