//! The machine itself: its host bridges and devices, placed by virtio-mmio
//! window index and PCI slot, each with its one [`DmaPath`].

use std::collections::HashMap;

use crate::arch::Arch;
use crate::bridge::{self, PciBridge};
use crate::device_types::DeviceKind;
use crate::dma::{DmaPath, DmaPool, PoolOwner};
use crate::endpoint_id::{mmio_endpoint, pci_bdf, pci_endpoint};
use crate::error::{fail, Result};
use crate::layout::{MmioWindow, VIRTIO_MMIO_WINDOWS};
use crate::options::{
    AttachOptions, DeviceOptions, IommuKind, MachineOptions, MixedCoherency, Transport, DEFAULT_BRIDGE,
};
use crate::vtd::Vtd;

/// First device number on a PCI root bus (0 is the host bridge).
pub(crate) const FIRST_PCI_SLOT: u8 = 1;
/// Last device number on a PCI bus.
pub(crate) const LAST_PCI_SLOT: u8 = 31;

/// Where a device sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A virtio-mmio window, by its position in the architecture's map
    /// ([`Arch::virtio_mmio_window`] gives its base and interrupt).
    Mmio {
        /// The window's index, from 0.
        window: u32,
    },
    /// A function on bus 0 of a PCI host bridge's segment; interrupts are
    /// MSI-X.
    Pci {
        /// The PCI segment (the bridge's position, `pci0` = 0).
        segment: u16,
        /// Device number (1-31; 0 is the host bridge).
        slot: u8,
    },
}

/// One device of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Stable name.
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Where it sits.
    pub placement: Placement,
    /// Declared DMA coherency (on PCI always its bridge's).
    pub coherent: bool,
    /// How it reaches guest memory.
    pub dma: DmaPath,
    /// The restricted DMA pool it asked for (`dma-pool=` on it or on its
    /// bridge), placed. [`DmaPath::Pool`] when nothing contradicts it;
    /// kept here with the path as otherwise asked when something does
    /// (`direct-ram-access=on`, a translated IOMMU scope), for the checks
    /// to refuse.
    pub pool: Option<DmaPool>,
}

/// The host bridges and devices of the machine, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The architecture whose address map places the devices.
    pub arch: Arch,
    /// vCPUs.
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// The PCI host bridges in segment order; `pci0` (segment 0) is always
    /// there.
    pub bridges: Vec<PciBridge>,
    /// The IOMMU first, then disks, RNGs and the console in command-line
    /// order.
    pub devices: Vec<Device>,
    /// The IOMMU's policy on domains mixing coherent and non-coherent
    /// endpoints (`--iommu mixed-coherency=`).
    pub mixed_coherency: MixedCoherency,
    /// The virtio-iommu's `bypass` state at reset (`--iommu
    /// boot-bypass=`): whether endpoints attached to no domain reach guest
    /// memory untranslated.
    pub boot_bypass: bool,
    /// `--iommu type=vtd`: the VT-d units in place of a virtio-iommu
    /// device ([`Machine::vtd_units`]).
    pub vtd: Option<Vtd>,
}

impl Machine {
    /// One vCPU, `memory` bytes of RAM, no devices, the default host bridge.
    pub fn empty(arch: Arch, memory: u64) -> Self {
        Self {
            arch,
            cpus: 1,
            memory,
            bridges: vec![PciBridge::default_root()],
            devices: Vec::new(),
            mixed_coherency: MixedCoherency::Allow,
            boot_bypass: false,
            vtd: None,
        }
    }
}

/// The window of device `id`'s `addr=` in `arch`'s map, or why there is
/// none.
fn mmio_window(arch: Arch, id: &str, addr: u64) -> Result<u32> {
    match arch.virtio_mmio_index(addr) {
        Some(index) => Ok(index),
        None => {
            let (first, second, last) = (
                arch.virtio_mmio_window(0).map_or(0, |w| w.base),
                arch.virtio_mmio_window(1).map_or(0, |w| w.base),
                VIRTIO_MMIO_WINDOWS - 1,
            );
            fail!(
                Placement,
                "{id}: addr={addr:#x} is not a virtio-mmio window: use {first:#x} + N * {:#x} for N from 0 to \
                 {last}",
                second - first
            )
        }
    }
}

/// Where a device's pool comes from.
#[derive(Debug, Clone, Copy)]
enum PoolAsk {
    /// A pool of its own of this size.
    Own(u64),
    /// Its host bridge's, by segment.
    Bridge(usize),
}

/// Places every pool (the bridges', then the devices' own) and confines
/// each device that has one to it, but for a device whose path says
/// otherwise (`direct-ram-access=on`, or asked translation): that one keeps
/// its path and its pool, for the checks.
fn place_pools(
    memory: u64,
    arch: Arch,
    bridges: &mut [PciBridge],
    devices: &mut [Device],
    asks: &[(Option<PoolAsk>, bool)],
) {
    let mut sizes: Vec<u64> = bridges.iter().filter_map(|b| b.dma_pool.map(|p| p.size)).collect();
    sizes.extend(asks.iter().filter_map(|(a, _)| match a {
        Some(PoolAsk::Own(size)) => Some(*size),
        _ => None,
    }));
    let mut bases = crate::pools::place(arch, memory, &sizes).into_iter();
    for pool in bridges.iter_mut().filter_map(|b| b.dma_pool.as_mut()) {
        pool.base = bases.next().unwrap_or(0);
    }
    for (d, (ask, asks_translation)) in devices.iter_mut().zip(asks) {
        d.pool = match ask {
            Some(PoolAsk::Own(size)) => {
                bases.next().map(|base| DmaPool { base, size: *size, owner: PoolOwner::Device })
            }
            Some(PoolAsk::Bridge(segment)) => bridges.get(*segment).and_then(|b| b.dma_pool),
            None => None,
        };
        if let Some(pool) = d.pool {
            if d.dma != DmaPath::Direct && !asks_translation {
                d.dma = DmaPath::Pool { base: pool.base, size: pool.size };
            }
        }
    }
}

/// A device asked for on the command line, before placement.
struct Request<'a> {
    kind: DeviceKind,
    attach: &'a AttachOptions,
}

impl Machine {
    /// Places the host bridges and devices given on the command line,
    /// naming unnamed devices `<kind><n>`, resolving what each device left
    /// to its bridge, and rejecting duplicate names and what cannot be
    /// built at all (an unknown bridge, a slot or window that does not
    /// exist, too many devices).
    ///
    /// The DMA-contract rules are not enforced here: a device keeps what it
    /// asked for (a PCI device's coherency, its `direct-ram-access`, an
    /// explicit `slot=`/`addr=` even if taken), so that [`crate::checks`]
    /// can report every broken rule with its code, the same from `run`
    /// and `describe`. A machine with error findings must not be run.
    pub fn new(options: &MachineOptions, arch: Arch) -> Result<Self> {
        let MachineOptions { cpus, memory, bridges, devices: device_options, iommu } = options;
        let (max_cpus, why) = arch.max_vcpus();
        if *cpus == 0 || *cpus > max_cpus {
            fail!(Layout, "--cpus {cpus}: the {arch} machine has 1 to {max_cpus} vCPUs ({why})");
        }
        let iommu = iommu.as_ref();
        let bridges = bridge::bridges(bridges)?;
        // A VT-d unit is no device: nothing to place.
        let virtio_iommu = iommu.filter(|i| matches!(i.kind, IommuKind::Virtio { .. }));
        let iommu_attach = virtio_iommu.map(|i| AttachOptions {
            id: i.id.clone(),
            transport: i.transport,
            coherent: None,
            // The IOMMU reaches guest memory directly unless told otherwise
            // (which the checks reject: it cannot be in its own scope).
            direct_ram_access: Some(i.direct_ram_access.unwrap_or(true)),
            bridge: i.bridge.clone(),
            slot: i.slot,
            addr: i.addr,
            dma_pool: None,
        });
        let mut requested: Vec<Request<'_>> = Vec::new();
        if let Some(attach) = &iommu_attach {
            requested.push(Request { kind: DeviceKind::Iommu, attach });
        }
        // Type by type in the registry's order, each type's devices in the
        // order given: names and places do not depend on how the options
        // were interleaved.
        let mut by_type: Vec<&DeviceOptions> = device_options.iter().collect();
        by_type.sort_by_key(|d| d.kind.device_type().map_or(usize::MAX, |(i, _)| i));
        for d in by_type {
            requested.push(Request { kind: d.kind.clone(), attach: &d.attach });
        }

        // Places asked for explicitly are kept free of automatic placement,
        // so that only two explicit requests can meet (a coded finding).
        let claimed_slots: Vec<(&str, u8)> = requested
            .iter()
            .filter(|r| r.attach.transport == Transport::Pci)
            .filter_map(|r| Some((r.attach.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE), r.attach.slot?)))
            .collect();
        let claimed_windows: Vec<u32> = requested
            .iter()
            .filter(|r| r.attach.transport == Transport::Mmio)
            .filter_map(|r| r.attach.addr.and_then(|a| arch.virtio_mmio_index(a)))
            .collect();

        let mut devices: Vec<Device> = Vec::new();
        // Per device: the size of a pool of its own, or whether it takes
        // its bridge's; and whether it asked to be in the IOMMU's scope.
        let mut pool_asks: Vec<(Option<PoolAsk>, bool)> = Vec::new();
        let mut next_window = 0u32;
        let mut next_slot: Vec<u8> = vec![FIRST_PCI_SLOT; bridges.len()];
        let mut counts = HashMap::<&str, usize>::new();
        for Request { kind, attach } in requested {
            let n = counts.entry(kind.option()).or_default();
            let id = attach.id.clone().unwrap_or_else(|| format!("{}{n}", kind.option()));
            *n += 1;
            if devices.iter().any(|d| d.id == id) {
                fail!(Placement, "two devices are named '{id}': give each an id=NAME of its own");
            }
            let is_iommu = kind == DeviceKind::Iommu;
            let mut pool_ask = attach.dma_pool.filter(|_| !is_iommu).map(PoolAsk::Own);
            let mut in_uniform_scope = false;
            let (placement, dma) = match attach.transport {
                Transport::Mmio => {
                    let dma = bridge::resolve_mmio(&id, attach)?;
                    if let Some(slot) = attach.slot {
                        fail!(
                            Placement,
                            "{id}: slot={slot} needs transport=pci: a virtio-mmio device has a window, addr="
                        );
                    }
                    let index = match attach.addr {
                        Some(addr) => mmio_window(arch, &id, addr)?,
                        None => {
                            while claimed_windows.contains(&next_window) {
                                next_window += 1;
                            }
                            next_window += 1;
                            next_window - 1
                        }
                    };
                    if index >= VIRTIO_MMIO_WINDOWS {
                        fail!(
                            Placement,
                            "{id}: too many virtio-mmio devices (at most {VIRTIO_MMIO_WINDOWS}); put some on \
                             transport=pci"
                        );
                    }
                    (Placement::Mmio { window: index }, dma)
                }
                Transport::Pci => {
                    if let Some(addr) = attach.addr {
                        fail!(
                            Placement,
                            "{id}: addr={addr:#x} needs transport=mmio: a PCI device has a slot, slot="
                        );
                    }
                    let bridge = bridge::bridge_of(&bridges, &id, attach)?;
                    let dma = bridge::resolve_pci(attach, bridge, is_iommu);
                    if pool_ask.is_none() && !is_iommu && bridge.dma_pool.is_some() {
                        pool_ask = Some(PoolAsk::Bridge(usize::from(bridge.segment)));
                    }
                    in_uniform_scope = bridge.hotplug && !bridge.direct_ram_access;
                    let segment = bridge.segment;
                    let slot = match attach.slot {
                        Some(slot) => slot,
                        None => {
                            let next = &mut next_slot[usize::from(segment)];
                            while claimed_slots.contains(&(bridge.id.as_str(), *next)) {
                                *next += 1;
                            }
                            *next += 1;
                            *next - 1
                        }
                    };
                    if slot > LAST_PCI_SLOT {
                        fail!(
                            Placement,
                            "{id}: too many PCI devices on host bridge {} (at most {}); add a bridge with \
                             --pci-bridge id=NAME and put some there with bridge=NAME",
                            bridge.id,
                            LAST_PCI_SLOT - FIRST_PCI_SLOT + 1
                        );
                    }
                    (Placement::Pci { segment, slot }, dma)
                }
            };
            // The IOMMU too, if it asked for direct-ram-access=off: the
            // model shows it in its own scope, and the checks refuse that.
            let translated = iommu.is_some() && !dma.direct_ram_access;
            // A device with a pool is outside the IOMMU's scope unless it
            // asks to be in it (direct-ram-access=off given, or a slot of a
            // translated hot-pluggable bridge, in scope whatever sits there).
            let asks_translation =
                translated && (attach.direct_ram_access == Some(false) || in_uniform_scope);
            pool_asks.push((pool_ask, asks_translation));
            let translated = translated && (pool_ask.is_none() || asks_translation);
            let dma_path = match (dma.direct_ram_access, translated, placement) {
                (true, _, _) => DmaPath::Direct,
                (false, false, _) => DmaPath::Identity,
                (false, true, Placement::Pci { segment, slot }) => {
                    DmaPath::Translated { endpoint: pci_endpoint(segment, pci_bdf(slot)) }
                }
                (false, true, Placement::Mmio { window }) => {
                    DmaPath::Translated { endpoint: mmio_endpoint(bridges.len(), window) }
                }
            };
            devices.push(Device { id, kind, placement, coherent: dma.coherent, dma: dma_path, pool: None });
        }
        let mut bridges = bridges;
        place_pools(*memory, arch, &mut bridges, &mut devices, &pool_asks);
        let mixed_coherency = iommu.map_or(MixedCoherency::Allow, |i| i.mixed_coherency);
        let boot_bypass = matches!(iommu.map(|i| i.kind), Some(IommuKind::Virtio { boot_bypass: true }));
        let mut machine = Self {
            arch,
            cpus: *cpus,
            memory: *memory,
            bridges,
            devices,
            mixed_coherency,
            boot_bypass,
            vtd: None,
        };
        if let Some(IommuKind::Vtd { coherent }) = iommu.map(|i| i.kind) {
            let units = machine.vtd_units_for(coherent);
            machine.vtd = Some(Vtd { coherent, units });
        }
        Ok(machine)
    }

    /// The host bridge a device placed on PCI segment `segment` sits on.
    pub fn bridge(&self, segment: u16) -> Option<&PciBridge> {
        self.bridges.iter().find(|b| b.segment == segment)
    }

    /// The register window and interrupt of a virtio-mmio device's
    /// placement in this machine's address map.
    pub fn mmio_window(&self, window: u32) -> Option<MmioWindow> {
        self.arch.virtio_mmio_window(window)
    }

    /// Every restricted DMA pool, placed: the bridges' in segment order,
    /// then the devices' own in device order.
    pub fn dma_pools(&self) -> Vec<DmaPool> {
        let own = self.devices.iter().filter_map(|d| d.pool).filter(|p| p.owner == PoolOwner::Device);
        self.bridges.iter().filter_map(|b| b.dma_pool).chain(own).collect()
    }

    /// The endpoints whose device is declared non-coherent.
    pub fn noncoherent_endpoints(&self) -> Vec<u32> {
        self.devices.iter().filter(|d| !d.coherent).filter_map(|d| d.dma.endpoint()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{parse_bridge, parse_disk, parse_iommu, parse_rng, BridgeOptions};
    use crate::test_utils::new_machine;
    use crate::PoolOwner;
    use dmavm_acpi::{ViotIommu, ViotMmioEndpoint, ViotPciRange};

    fn bridges(list: &[&str]) -> Vec<BridgeOptions> {
        list.iter().map(|t| parse_bridge(t).unwrap()).collect()
    }

    #[test]
    fn the_vcpu_count_fits_the_architecture() {
        let build = |cpus: u32, arch: Arch| Machine::new(&MachineOptions::new(cpus, 64 << 20), arch);
        assert!(build(254, Arch::X86_64).is_ok());
        assert!(build(123, Arch::Aarch64).is_ok());
        let err = build(255, Arch::X86_64).unwrap_err().to_string();
        assert!(err.starts_with("--cpus 255: the x86_64 machine has 1 to 254 vCPUs (the MADT"), "{err}");
        let err = build(124, Arch::Aarch64).unwrap_err().to_string();
        assert!(err.starts_with("--cpus 124: the aarch64 machine has 1 to 123 vCPUs"), "{err}");
        let err = build(u32::MAX, Arch::X86_64).unwrap_err().to_string();
        assert!(err.starts_with("--cpus 4294967295: "), "{err}");
        assert!(build(0, Arch::Aarch64).is_err());
    }

    #[test]
    fn places_and_names_devices() {
        let disks = [parse_disk("path=a").unwrap(), parse_disk("path=b,coherent=off,id=data").unwrap()];
        let m = new_machine(&[], &disks, &[parse_rng("").unwrap()], None, None).unwrap();
        let ids: Vec<&str> = m.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["disk0", "data", "rng0"]);
        assert_eq!(m.devices[0].placement, Placement::Mmio { window: 0 });
        assert_eq!(m.devices[2].placement, Placement::Mmio { window: 2 });
        assert!(!m.devices[1].coherent);
        assert_eq!(m.bridges, [PciBridge::default_root()]);
    }

    #[test]
    fn pci_devices_take_slots_and_the_bridge_coherency() {
        let disks = [parse_disk("path=a,transport=pci").unwrap(), parse_disk("path=b").unwrap()];
        let m = new_machine(&[], &disks, &[parse_rng("transport=pci").unwrap()], None, None).unwrap();
        assert_eq!(m.devices[0].placement, Placement::Pci { segment: 0, slot: 1 });
        assert_eq!(m.devices[1].placement, Placement::Mmio { window: 0 });
        assert_eq!(m.devices[2].placement, Placement::Pci { segment: 0, slot: 2 });
        assert_eq!(m.acpi_virtio_mmio().len(), 1);
        // Another coherency than the bridge's is kept as asked, for the
        // checks to refuse (DMA002).
        let m =
            new_machine(&[], &[parse_disk("path=a,transport=pci,coherent=off").unwrap()], &[], None, None)
                .unwrap();
        assert!(!m.devices[0].coherent);
    }

    #[test]
    fn each_bridge_its_own_slots_and_properties() {
        let disks = [
            parse_disk("path=a,transport=pci,bridge=fast").unwrap(),
            parse_disk("path=b,transport=pci").unwrap(),
            parse_disk("path=c,transport=pci,bridge=slow").unwrap(),
            parse_disk("path=d,transport=pci,bridge=fast").unwrap(),
        ];
        let b = bridges(&["id=fast,direct-ram-access=on", "id=slow,coherent=off"]);
        let m = new_machine(&b, &disks, &[], None, Some(&parse_iommu("").unwrap())).unwrap();
        let placed: Vec<(Placement, bool, bool, Option<u32>)> = m
            .devices
            .iter()
            .map(|d| (d.placement, d.coherent, d.dma.offers_access_platform(), d.dma.endpoint()))
            .collect();
        let pci = |segment, slot| Placement::Pci { segment, slot };
        assert_eq!(
            placed,
            [
                (pci(0, 1), true, false, None),           // the IOMMU
                (pci(1, 1), true, false, None),           // bypassing by its bridge
                (pci(0, 2), true, true, Some(0x10)),      // translated
                (pci(2, 1), false, true, Some(0x2_0008)), // translated, non-coherent bridge
                (pci(1, 2), true, false, None),
            ]
        );
    }

    #[test]
    fn viot_scope_is_exactly_the_translated_devices() {
        let disks = [
            parse_disk("path=a,transport=pci").unwrap(),
            parse_disk("path=b,transport=pci,direct-ram-access=on").unwrap(),
            parse_disk("path=c,transport=pci").unwrap(),
            parse_disk("path=d,transport=pci").unwrap(),
            parse_disk("path=e").unwrap(),
            parse_disk("path=f,direct-ram-access=on").unwrap(),
        ];
        let iommu = parse_iommu("").unwrap();
        let m = new_machine(&[], &disks, &[], None, Some(&iommu)).unwrap();
        // The IOMMU takes slot 1; disks at slots 2 (translated), 3 (bypass),
        // 4 and 5 (translated); mmio disks at 0xd0000000 (translated) and
        // 0xd0001000 (bypass).
        let viot = m.acpi_viot().unwrap();
        assert_eq!(viot.iommu, ViotIommu::Pci { segment: 0, bdf: 0x08 });
        assert_eq!(
            viot.pci_ranges,
            [
                ViotPciRange { segment: 0, bdf_start: 0x10, bdf_end: 0x17, endpoint_start: 0x10 },
                ViotPciRange { segment: 0, bdf_start: 0x20, bdf_end: 0x2f, endpoint_start: 0x20 },
            ]
        );
        assert_eq!(viot.mmio_endpoints, [ViotMmioEndpoint { base: 0xd000_0000, endpoint: 0x1_0000 }]);
        let offers: Vec<bool> = m.devices.iter().map(|d| d.dma.offers_access_platform()).collect();
        assert_eq!(offers, [false, true, false, true, true, true, false]);
        assert!(new_machine(&[], &disks, &[], None, None).unwrap().acpi_viot().is_none());
    }

    #[test]
    fn what_cannot_be_built_says_why() {
        let b = bridges(&["id=fast,direct-ram-access=on", "id=hp,hotplug=on", "id=slow,coherent=off"]);
        let iommu = parse_iommu("").unwrap();
        for (disk, needle) in [
            ("transport=pci,bridge=nope", "disk0: bridge=nope: no such PCI host bridge"),
            ("bridge=fast", "disk0: bridge=fast needs transport=pci"),
            ("slot=3", "disk0: slot=3 needs transport=pci"),
            ("transport=pci,addr=0xd0000000", "disk0: addr=0xd0000000 needs transport=mmio"),
            (
                "addr=0xd0000800",
                "disk0: addr=0xd0000800 is not a virtio-mmio window: use 0xd0000000 + N * 0x1000",
            ),
            ("addr=0xd0013000", "disk0: addr=0xd0013000 is not a virtio-mmio window"),
            ("addr=0x1000", "disk0: addr=0x1000 is not a virtio-mmio window"),
        ] {
            let disks = [parse_disk(&format!("path=a,{disk}")).unwrap()];
            let err = new_machine(&b, &disks, &[], None, Some(&iommu)).unwrap_err().to_string();
            assert!(err.contains(needle), "{disk}: {err}");
        }
        let err = new_machine(&b, &[], &[], None, Some(&parse_iommu("bridge=nope").unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("iommu0: bridge=nope: no such PCI host bridge"), "{err}");
        // The IOMMU itself may sit anywhere, even in a translated hot-pluggable bridge.
        assert!(new_machine(&b, &[], &[], None, Some(&parse_iommu("bridge=hp").unwrap())).is_ok());
        assert!(new_machine(&b, &[], &[], None, Some(&parse_iommu("bridge=fast").unwrap())).is_ok());
        // The last window and the last slot exist.
        let last = [
            parse_disk("path=a,addr=0xd0011000").unwrap(),
            parse_disk("path=b,transport=pci,slot=31").unwrap(),
        ];
        let m = new_machine(&[], &last, &[], None, None).unwrap();
        assert_eq!(m.devices[0].placement, Placement::Mmio { window: 17 });
        assert_eq!(m.devices[1].placement, Placement::Pci { segment: 0, slot: 31 });
    }

    #[test]
    fn broken_dma_rules_are_kept_as_asked_for_the_checks() {
        // These are the checks' to report (crate::checks): the model shows
        // what was asked.
        let b = bridges(&["id=fast,direct-ram-access=on", "id=slow,coherent=off"]);
        let disks = [
            parse_disk("path=a,transport=pci,bridge=fast,direct-ram-access=off").unwrap(),
            parse_disk("path=b,transport=pci,bridge=slow,coherent=on,slot=1").unwrap(),
            parse_disk("path=c,transport=pci,bridge=slow,slot=1").unwrap(),
        ];
        let iommu = parse_iommu("direct-ram-access=off").unwrap();
        let m = new_machine(&b, &disks, &[], None, Some(&iommu)).unwrap();
        let d: Vec<(Placement, bool, bool, Option<u32>)> = m
            .devices
            .iter()
            .map(|d| (d.placement, d.coherent, d.dma.offers_access_platform(), d.dma.endpoint()))
            .collect();
        let pci = |segment, slot| Placement::Pci { segment, slot };
        assert_eq!(
            d,
            [
                (pci(0, 1), true, true, Some(0x08)),
                (pci(1, 1), true, true, Some(0x1_0008)),
                (pci(2, 1), true, true, Some(0x2_0008)),
                (pci(2, 1), false, true, Some(0x2_0008)),
            ]
        );
    }

    #[test]
    fn pools_confine_devices_outside_the_iommu_scope() {
        use crate::dma::POOL_ALIGN;
        let b = bridges(&["id=bounce,dma-pool=4M"]);
        let disks = [
            parse_disk("path=a,dma-pool=1M").unwrap(),
            parse_disk("path=b,transport=pci,bridge=bounce").unwrap(),
            parse_disk("path=c,transport=pci,bridge=bounce,dma-pool=2M").unwrap(),
            parse_disk("path=d").unwrap(),
            parse_disk("path=e,dma-pool=1M,direct-ram-access=off").unwrap(),
        ];
        let options = MachineOptions {
            bridges: b,
            devices: disks.to_vec(),
            iommu: Some(parse_iommu("transport=mmio").unwrap()),
            ..MachineOptions::new(1, 1 << 30)
        };
        let m = Machine::new(&options, Arch::Aarch64).unwrap();
        let top = crate::layout::aarch64::RAM_START + (1 << 30);
        // The bridge's pool first, at the top of RAM, then the devices' own.
        let bridge_pool = m.bridges[1].dma_pool.unwrap();
        assert_eq!((bridge_pool.base, bridge_pool.size), (top - (4 << 20), 4 << 20));
        let by_id = |id: &str| m.devices.iter().find(|d| d.id == id).unwrap();
        assert_eq!(by_id("disk0").dma, DmaPath::Pool { base: top - (6 << 20), size: 1 << 20 });
        assert_eq!(by_id("disk1").dma, DmaPath::Pool { base: bridge_pool.base, size: 4 << 20 });
        assert_eq!(by_id("disk1").pool.unwrap().owner, PoolOwner::Bridge);
        // Its own pool wins over the bridge's.
        assert_eq!(by_id("disk2").dma, DmaPath::Pool { base: top - (8 << 20), size: 2 << 20 });
        // Without a pool, translated; asking for the scope with a pool keeps
        // the scope (DMA011 refuses it) and the pool.
        assert!(by_id("disk3").dma.endpoint().is_some());
        assert!(by_id("disk4").dma.endpoint().is_some());
        assert!(by_id("disk4").pool.is_some());
        let pools = m.dma_pools();
        assert_eq!(pools.len(), 4);
        for (i, p) in pools.iter().enumerate() {
            assert_eq!(p.base % POOL_ALIGN, 0);
            for q in &pools[i + 1..] {
                assert!(p.end() <= q.base || q.end() <= p.base, "{p:?} overlaps {q:?}");
            }
        }
        // Everything the back end loads stays below the lowest pool.
        assert_eq!(m.boot_top(), crate::layout::aarch64::RAM_START + (1 << 30) - (10 << 20));
        let offers: Vec<bool> = m.devices.iter().map(|d| d.dma.offers_access_platform()).collect();
        assert!(offers.iter().skip(1).all(|&o| o), "every device but the IOMMU offers ACCESS_PLATFORM");
    }

    #[test]
    fn rejects_duplicates_and_too_many() {
        let disks = [parse_disk("path=a,id=x").unwrap(), parse_disk("path=b,id=x").unwrap()];
        assert!(new_machine(&[], &disks, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("two devices are named 'x'"));
        let many: Vec<_> = (0..19).map(|i| parse_disk(&format!("path=d{i}")).unwrap()).collect();
        assert!(new_machine(&[], &many, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("too many virtio-mmio"));
        assert!(new_machine(&[], &many[..18], &[], None, None).is_ok());
        let many: Vec<_> =
            (0..32).map(|i| parse_disk(&format!("path=d{i},transport=pci")).unwrap()).collect();
        let err = new_machine(&[], &many, &[], None, None).unwrap_err().to_string();
        assert!(err.contains("disk31: too many PCI devices on host bridge pci0 (at most 31)"), "{err}");
        assert!(new_machine(&[], &many[..31], &[], None, None).is_ok());
    }
}
