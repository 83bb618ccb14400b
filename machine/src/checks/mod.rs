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

mod rules;

use std::fmt;

pub use rules::{Code, Severity};

use crate::options::MixedCoherency;
use crate::{Device, DeviceKind, Machine, Placement};

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
    fn new(code: Code, message: String) -> Self {
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
    /// What dmavm gives guests on this host.
    pub const HOST: Firmware =
        if cfg!(target_arch = "x86_64") { Firmware::Acpi } else { Firmware::DeviceTree };
}

/// Every finding of `machine` as this host's guests get it: errors first,
/// then warnings, each in code order.
pub fn check(machine: &Machine) -> Vec<Finding> {
    check_with(machine, Firmware::HOST)
}

/// Every finding of `machine` described to a guest by `firmware`.
pub fn check_with(machine: &Machine, firmware: Firmware) -> Vec<Finding> {
    let mut out = Vec::new();
    bypassing_bridge_translated(machine, &mut out);
    coherency_differs_from_bridge(machine, &mut out);
    bypass_on_hotplug_bridge(machine, &mut out);
    iommu_in_own_scope(machine, &mut out);
    shared_addresses(machine, &mut out);
    declared_noncoherent(machine, &mut out);
    let unused = iommu_unused(machine, &mut out);
    mixed_coherency(machine, &mut out);
    if firmware == Firmware::Acpi && !unused {
        bypass_unknown_to_old_guests(machine, &mut out);
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

fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

/// "a", "a and b", "a, b and c".
fn names<'a>(devices: impl IntoIterator<Item = &'a Device>) -> String {
    let ids: Vec<&str> = devices.into_iter().map(|d| d.id.as_str()).collect();
    match ids.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn is_iommu(d: &Device) -> bool {
    d.kind == DeviceKind::Iommu
}

/// The devices but the IOMMU.
fn endpoints(machine: &Machine) -> impl Iterator<Item = &Device> {
    machine.devices.iter().filter(|d| !is_iommu(d))
}

/// The PCI devices with their host bridge.
fn on_bridges(machine: &Machine) -> impl Iterator<Item = (&Device, &crate::PciBridge)> {
    machine.devices.iter().filter_map(|d| match d.placement {
        Placement::Pci { segment, .. } => Some((d, machine.bridge(segment)?)),
        Placement::Mmio { .. } => None,
    })
}

/// DMA001.
fn bypassing_bridge_translated(machine: &Machine, out: &mut Vec<Finding>) {
    for (d, b) in on_bridges(machine) {
        if !is_iommu(d) && b.direct_ram_access && d.dma.offers_access_platform() {
            out.push(Finding::new(
                Code::Dma001,
                format!(
                    "{}: direct-ram-access=off is impossible on host bridge {} (direct-ram-access=on): that \
                     bridge bypasses the IOMMU as a whole and the VIOT declares no range for its segment {}, so \
                     nothing below it can be translated; put the device on a bridge with direct-ram-access=off",
                    d.id, b.id, b.segment
                ),
            ));
        }
    }
}

/// DMA002.
fn coherency_differs_from_bridge(machine: &Machine, out: &mut Vec<Finding>) {
    for (d, b) in on_bridges(machine) {
        if d.coherent != b.coherent {
            out.push(Finding::new(
                Code::Dma002,
                format!(
                    "{}: coherent={} conflicts with its host bridge {} (coherent={}): a PCI device's DMA \
                     coherency is its host bridge's (_CCA on the root); leave coherent= out, put the device on \
                     a bridge declared --pci-bridge id=NAME,coherent={}, or use transport=mmio",
                    d.id,
                    on_off(d.coherent),
                    b.id,
                    on_off(b.coherent),
                    on_off(d.coherent)
                ),
            ));
        }
    }
}

/// DMA003.
fn bypass_on_hotplug_bridge(machine: &Machine, out: &mut Vec<Finding>) {
    for (d, b) in on_bridges(machine) {
        if !is_iommu(d) && b.hotplug && !b.direct_ram_access && !d.dma.offers_access_platform() {
            out.push(Finding::new(
                Code::Dma003,
                format!(
                    "{}: direct-ram-access=on is not allowed on host bridge {} (hotplug=on, \
                     direct-ram-access=off): the IOMMU scope of a hot-pluggable bridge covers all its slots, \
                     whatever is plugged in later, so no single device in it can bypass the IOMMU; put the \
                     device on another bridge, or make the whole bridge direct-ram-access=on",
                    d.id, b.id
                ),
            ));
        }
    }
}

/// DMA004.
fn iommu_in_own_scope(machine: &Machine, out: &mut Vec<Finding>) {
    for d in machine.devices.iter().filter(|d| is_iommu(d) && d.dma.offers_access_platform()) {
        out.push(Finding::new(
            Code::Dma004,
            format!(
                "{}: direct-ram-access=off would put the IOMMU in its own scope: it reads its request queues \
                 at guest-physical addresses, and nothing can translate them before it makes the first \
                 mapping; leave direct-ram-access out of --iommu",
                d.id
            ),
        ));
    }
}

/// Where a placement is, as the guest names it.
fn place(machine: &Machine, placement: Placement) -> String {
    match placement {
        Placement::Pci { segment, slot } => {
            let bridge = machine.bridge(segment).map_or("?", |b| b.id.as_str());
            format!("PCI {segment:04x}:00:{slot:02x}.0 (slot={slot} on host bridge {bridge})")
        }
        Placement::Mmio { window } => match machine.mmio_window(window) {
            Some(w) => {
                let pin = match machine.arch {
                    crate::Arch::X86_64 => "IOAPIC pin",
                    crate::Arch::Aarch64 => "SPI",
                };
                format!("virtio-mmio window {:#x} (addr={:#x}, {pin} {})", w.base, w.base, w.interrupt)
            }
            None => format!("virtio-mmio window {window}"),
        },
    }
}

/// DMA005.
fn shared_addresses(machine: &Machine, out: &mut Vec<Finding>) {
    // Grouped by place, in the order the first device of each group has.
    let mut groups: Vec<(Placement, Vec<&Device>)> = Vec::new();
    for d in &machine.devices {
        match groups.iter_mut().find(|(p, _)| *p == d.placement) {
            Some((_, list)) => list.push(d),
            None => groups.push((d.placement, vec![d])),
        }
    }
    for (placement, list) in groups.into_iter().filter(|(_, list)| list.len() > 1) {
        let key = match placement {
            Placement::Pci { .. } => "slot=",
            Placement::Mmio { .. } => "addr=",
        };
        let both = if list.len() == 2 { "both" } else { "all" };
        out.push(Finding::new(
            Code::Dma005,
            format!(
                "{} {both} sit at {}: give each its own {key}, or leave {key} out for the first free place",
                names(list),
                place(machine, placement)
            ),
        ));
    }
}

/// DMA101: per virtio-mmio device, and per host bridge (its devices
/// inherit the bridge's coherency).
fn declared_noncoherent(machine: &Machine, out: &mut Vec<Finding>) {
    const WHY: &str = "but dmavm accesses guest memory through cacheable mappings: a guest that maps the \
                       buffers non-cacheable (arm64) loses coherency and ordering with the device, which appears \
                       to hang; only truthful for testing a guest's cache-maintenance paths";
    for b in machine.bridges.iter().filter(|b| !b.coherent) {
        let below: Vec<&Device> =
            on_bridges(machine).filter(|(_, on)| on.id == b.id).map(|(d, _)| d).collect();
        let devices = if below.is_empty() { String::new() } else { format!(" for {}", names(below)) };
        out.push(Finding::new(
            Code::Dma101,
            format!(
                "host bridge {}: declared coherent=off (_CCA 0 on segment {}){devices}, {WHY}",
                b.id, b.segment
            ),
        ));
    }
    for d in machine.devices.iter().filter(|d| !d.coherent && matches!(d.placement, Placement::Mmio { .. })) {
        out.push(Finding::new(Code::Dma101, format!("{}: declared coherent=off, {WHY}", d.id)));
    }
}

/// DMA102; returns whether it fired (DMA104 would then say the same
/// thing again).
fn iommu_unused(machine: &Machine, out: &mut Vec<Finding>) -> bool {
    let Some(iommu) = machine.devices.iter().find(|d| is_iommu(d)) else {
        return false;
    };
    let others: Vec<&Device> = endpoints(machine).collect();
    // A translated hot-pluggable bridge keeps its empty slots in scope.
    let hotplug_scope = machine.bridges.iter().any(|b| b.hotplug && !b.direct_ram_access);
    if others.is_empty() || others.iter().any(|d| d.dma.endpoint().is_some()) || hotplug_scope {
        return false;
    }
    let verb = if others.len() == 1 { "bypasses" } else { "bypass" };
    out.push(Finding::new(
        Code::Dma102,
        format!(
            "{}: no device is in its scope ({} {verb} it with direct-ram-access=on, of its own or its host \
             bridge's): the guest gets an IOMMU that translates and isolates nothing; give the devices to \
             isolate direct-ram-access=off, or drop --iommu",
            iommu.id,
            names(others)
        ),
    ));
    true
}

/// DMA103.
fn mixed_coherency(machine: &Machine, out: &mut Vec<Finding>) {
    if machine.mixed_coherency != MixedCoherency::Allow || !machine.devices.iter().any(is_iommu) {
        return;
    }
    let translated: Vec<&Device> = endpoints(machine).filter(|d| d.dma.endpoint().is_some()).collect();
    let (coherent, noncoherent): (Vec<&Device>, Vec<&Device>) =
        translated.into_iter().partition(|d| d.coherent);
    if coherent.is_empty() || noncoherent.is_empty() {
        return;
    }
    out.push(Finding::new(
        Code::Dma103,
        format!(
            "translated devices of different coherency ({} coherent, {} non-coherent) may be put in one IOMMU \
             domain by the guest, whose mappings carry one set of memory attributes, so one side's would be \
             wrong; --iommu mixed-coherency=reject makes the IOMMU refuse such an ATTACH",
            names(coherent),
            names(noncoherent)
        ),
    ));
}

/// DMA104.
fn bypass_unknown_to_old_guests(machine: &Machine, out: &mut Vec<Finding>) {
    let Some(iommu) = machine.devices.iter().find(|d| is_iommu(d)) else {
        return;
    };
    let bypassing: Vec<&Device> = endpoints(machine).filter(|d| d.dma.endpoint().is_none()).collect();
    if bypassing.is_empty() {
        return;
    }
    let verb = if bypassing.len() == 1 { "bypasses" } else { "bypass" };
    let who = names(bypassing);
    out.push(Finding::new(
        Code::Dma104,
        format!(
            "{who} {verb} {} (direct-ram-access=on), which only the ACPI VIOT tells the guest: an x86 guest \
             older than Linux 5.14 does not read it and cannot tell {who} from the translated devices; boot \
             Linux 5.14 or later, or translate every device",
            iommu.id
        ),
    ));
}

#[cfg(test)]
mod tests;
