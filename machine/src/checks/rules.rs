//! The rules: one function per code (see [`super::Code`]), each adding a
//! finding per broken rule, naming the devices involved.

use super::{Code, Finding};
use crate::options::MixedCoherency;
use crate::{Arch, Device, DeviceKind, Machine, Placement};

use crate::options::on_off_word as on_off;

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
pub(super) fn bypassing_bridge_translated(machine: &Machine, out: &mut Vec<Finding>) {
    for (d, b) in on_bridges(machine) {
        if !is_iommu(d) && b.direct_ram_access && d.dma.offers_access_platform() {
            let table = if machine.vtd.is_some() {
                "the DMAR gives no VT-d unit to"
            } else {
                "the VIOT declares no range for"
            };
            out.push(Finding::new(
                Code::Dma001,
                format!(
                    "{}: direct-ram-access=off is impossible on host bridge {} (direct-ram-access=on): that \
                     bridge bypasses the IOMMU as a whole and {table} its segment {}, so nothing below it can \
                     be translated; put the device on a bridge with direct-ram-access=off",
                    d.id, b.id, b.segment
                ),
            ));
        }
    }
}

/// DMA002.
pub(super) fn coherency_differs_from_bridge(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn bypass_on_hotplug_bridge(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn iommu_in_own_scope(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn shared_addresses(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn declared_noncoherent(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn iommu_unused(machine: &Machine, out: &mut Vec<Finding>) -> bool {
    let Some(iommu) = machine.devices.iter().find(|d| is_iommu(d)) else {
        return false;
    };
    // Devices confined to a pool are outside the scope by their own rule.
    let others: Vec<&Device> = endpoints(machine).filter(|d| d.pool.is_none()).collect();
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
pub(super) fn mixed_coherency(machine: &Machine, out: &mut Vec<Finding>) {
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
pub(super) fn bypass_unknown_to_old_guests(machine: &Machine, out: &mut Vec<Finding>) {
    let Some(iommu) = machine.devices.iter().find(|d| is_iommu(d)) else {
        return;
    };
    let bypassing: Vec<&Device> =
        endpoints(machine).filter(|d| d.dma.endpoint().is_none() && d.pool.is_none()).collect();
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

/// DMA006.
pub(super) fn vtd_not_on_x86(machine: &Machine, out: &mut Vec<Finding>) {
    if machine.vtd.is_some() && machine.arch != Arch::X86_64 {
        out.push(Finding::new(
            Code::Dma006,
            format!(
                "--iommu type=vtd: Intel VT-d is an x86 IOMMU, declared in the ACPI DMAR, and the {} machine \
                 has a device tree and no VT-d driver in its guest; use --iommu type=virtio there",
                machine.arch
            ),
        ));
    }
}

/// DMA007.
pub(super) fn vtd_mmio_translated(machine: &Machine, out: &mut Vec<Finding>) {
    if machine.vtd.is_none() {
        return;
    }
    let mmio = machine.devices.iter().filter(|d| matches!(d.placement, Placement::Mmio { .. }));
    for d in mmio.filter(|d| d.dma.endpoint().is_some()) {
        out.push(Finding::new(
            Code::Dma007,
            format!(
                "{}: a translated virtio-mmio device cannot be behind VT-d: Linux's intel-iommu finds a \
                 device's unit by its DMAR device scope, which names PCI functions, and dmavm declares no \
                 ACPI namespace-device scope for a virtio-mmio device; use transport=pci, or \
                 direct-ram-access=on",
                d.id
            ),
        ));
    }
}

/// DMA105.
pub(super) fn vtd_unused(machine: &Machine, out: &mut Vec<Finding>) {
    let Some(vtd) = &machine.vtd else {
        return;
    };
    let translated_mmio = endpoints(machine).any(|d| d.dma.endpoint().is_some());
    if !vtd.units.is_empty() || translated_mmio {
        return;
    }
    out.push(Finding::new(
        Code::Dma105,
        "--iommu type=vtd: no PCI function is translated (every one has direct-ram-access=on, of its own or \
         its host bridge's, or there is none), so the machine has no VT-d unit and no DMAR: the guest sees \
         no IOMMU; give the PCI devices to isolate direct-ram-access=off, or drop --iommu"
            .to_string(),
    ));
}

/// DMA106.
pub(super) fn vtd_noncoherent_walks(machine: &Machine, out: &mut Vec<Finding>) {
    if machine.vtd.as_ref().is_some_and(|v| !v.coherent) {
        out.push(Finding::new(
            Code::Dma106,
            "--iommu type=vtd,coherent=off: the VT-d units declare non-coherent page walks (ECAP.C clear), \
             so the guest flushes CPU caches after every page-table update, but dmavm reads the tables \
             through cacheable mappings and needs no flush; only useful to test a guest's flush path"
                .to_string(),
        ));
    }
}
/// "4 MiB at 0x7fc00000" (a pool, for messages).
fn pool_text(pool: &crate::DmaPool) -> String {
    let size = if pool.size % (1 << 20) == 0 {
        format!("{} MiB", pool.size >> 20)
    } else {
        format!("{} KiB", pool.size >> 10)
    };
    format!("{size} at {:#x}", pool.base)
}

/// Whose pool a device has, for messages: "its pool" or "host bridge b's pool".
fn pool_owner(machine: &Machine, d: &Device) -> String {
    match (d.pool.map(|p| p.owner), d.placement) {
        (Some(crate::PoolOwner::Bridge), Placement::Pci { segment, .. }) => {
            format!(
                "the dma-pool of its host bridge {}",
                machine.bridge(segment).map_or("?", |b| b.id.as_str())
            )
        }
        _ => "its dma-pool".into(),
    }
}

/// DMA010: per bridge with both, and per device that has a pool and
/// direct-ram-access=on of its own.
pub(super) fn pool_with_direct_access(machine: &Machine, out: &mut Vec<Finding>) {
    const WHY: &str = "a device with direct-ram-access=on is offered no VIRTIO_F_ACCESS_PLATFORM, so the \
                       guest's driver hands it buffers anywhere in RAM instead of bouncing them through the pool \
                       its DMA API would use, and dmavm refuses every access outside the pool";
    for b in machine.bridges.iter().filter(|b| b.dma_pool.is_some() && b.direct_ram_access) {
        out.push(Finding::new(
            Code::Dma010,
            format!("host bridge {}: dma-pool= with direct-ram-access=on: {WHY}; drop one of them", b.id),
        ));
    }
    for d in machine.devices.iter().filter(|d| d.pool.is_some() && d.dma == crate::DmaPath::Direct) {
        let inherited = matches!(d.placement, Placement::Pci { segment, .. }
            if machine.bridge(segment).is_some_and(|b| b.dma_pool.is_some() && b.direct_ram_access)
                && d.pool.map(|p| p.owner) == Some(crate::PoolOwner::Bridge));
        if inherited {
            continue;
        }
        out.push(Finding::new(
            Code::Dma010,
            format!(
                "{}: {} with direct-ram-access=on: {WHY}; leave direct-ram-access out (a device with a pool \
                 is outside the IOMMU's scope anyway)",
                d.id,
                pool_owner(machine, d)
            ),
        ));
    }
}

/// DMA011.
pub(super) fn pool_in_iommu_scope(machine: &Machine, out: &mut Vec<Finding>) {
    for d in machine.devices.iter().filter(|d| d.pool.is_some() && d.dma.endpoint().is_some()) {
        out.push(Finding::new(
            Code::Dma011,
            format!(
                "{}: {} and the IOMMU's scope (direct-ram-access=off given, or a slot of a translated hotplug=on \
                 bridge): Linux gives a device behind an IOMMU IOVAs from the IOMMU's DMA ops and never bounces \
                 through its restricted pool, so the pool would confine nothing; leave direct-ram-access out \
                 (a device with a pool is outside the scope), or put it on another bridge",
                d.id,
                pool_owner(machine, d)
            ),
        ));
    }
}

/// DMA012.
pub(super) fn pool_without_firmware(machine: &Machine, out: &mut Vec<Finding>) {
    if machine.arch != crate::Arch::X86_64 {
        return;
    }
    let bridges =
        machine.bridges.iter().filter(|b| b.dma_pool.is_some()).map(|b| format!("host bridge {}", b.id));
    let devices = machine
        .devices
        .iter()
        .filter(|d| d.pool.map(|p| p.owner) == Some(crate::PoolOwner::Device))
        .map(|d| d.id.clone());
    let who: Vec<String> = bridges.chain(devices).collect();
    if who.is_empty() {
        return;
    }
    out.push(Finding::new(
        Code::Dma012,
        format!(
            "{}: dma-pool= on x86_64: ACPI has no way to declare a restricted DMA pool (Linux reads them only \
             from a device tree's reserved-memory), so the guest would never bounce through it and every \
             access would be refused; use an arm64 machine, or drop dma-pool=",
            who.join(", ")
        ),
    ));
}

/// DMA013: the pools, carved from the top of RAM, must leave at least
/// half of it to the guest (and fit at all).
pub(super) fn pools_do_not_fit(machine: &Machine, out: &mut Vec<Finding>) {
    let pools = machine.dma_pools();
    if pools.is_empty() {
        return;
    }
    let floor = crate::pools::ram_floor(machine.arch, machine.memory);
    let top = crate::pools::ram_top(machine.arch, machine.memory);
    let lowest = pools.iter().map(|p| p.base).min().unwrap_or(top);
    let total: u64 = pools.iter().map(|p| p.size).sum();
    let placed = pools.iter().all(|p| p.base >= floor && p.end() <= top);
    if placed && top - lowest <= machine.memory / 2 {
        return;
    }
    let list: Vec<String> = pools.iter().map(pool_text).collect();
    out.push(Finding::new(
        Code::Dma013,
        format!(
            "the restricted DMA pools ({} MiB in all{}) do not fit in {} MiB of RAM leaving the guest at least \
             half of it: the kernel, initrd and device tree go below the pools, and the guest needs the rest to \
             run; give more --memory or smaller dma-pool= sizes",
            total.div_ceil(1 << 20),
            if placed { format!(": {}", list.join(", ")) } else { String::new() },
            machine.memory >> 20
        ),
    ));
}

/// DMA107: a pool shared by several devices.
pub(super) fn shared_pool(machine: &Machine, out: &mut Vec<Finding>) {
    for b in machine.bridges.iter() {
        let Some(pool) = b.dma_pool else { continue };
        let sharing: Vec<&Device> =
            machine.devices.iter().filter(|d| d.pool == Some(pool) && d.dma.pool().is_some()).collect();
        if sharing.len() < 2 {
            continue;
        }
        out.push(Finding::new(
            Code::Dma107,
            format!(
                "host bridge {}: {} share its dma-pool ({}): one device's bounce buffers and rings can exhaust \
                 it, and Linux then fails the others' mappings (swiotlb \"buffer is full\"), and the pool \
                 confines each device only to memory the others use too; give a device that needs isolation \
                 or steady throughput a dma-pool= of its own",
                b.id,
                names(sharing),
                pool_text(&pool)
            ),
        ));
    }
}

/// DMA108: a pool smaller than a device's rings and one largest bounce.
pub(super) fn small_pool(machine: &Machine, out: &mut Vec<Finding>) {
    for d in machine.devices.iter().filter(|d| d.dma.pool().is_some()) {
        let Some(pool) = d.pool else { continue };
        if pool.size >= SMALL_POOL {
            continue;
        }
        out.push(Finding::new(
            Code::Dma108,
            format!(
                "{}: {} is {}: Linux allocates the device's rings from it as well as every bounce buffer (up \
                 to 256 KiB each), so a busy device runs out and its I/O fails; give it 1M or more",
                d.id,
                pool_owner(machine, d),
                pool_text(&pool)
            ),
        ));
    }
}

/// Below this, a pool is DMA108.
const SMALL_POOL: u64 = 1 << 20;
