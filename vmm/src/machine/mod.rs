//! The machine model: which devices the VM has, where they sit, what they
//! declare. The one place the DMA-contract policy lives; the ACPI tables
//! (and later `describe` and the device tree) are generated from it, so
//! they cannot disagree with the devices that run.

mod acpi;
mod bridge;
pub mod dt;
mod scope;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use dmavm_iommu::MixedCoherency;

pub use bridge::PciBridge;
pub use scope::{mmio_endpoint, pci_bdf, pci_endpoint};

use crate::device_options::{
    BridgeOptions, Common, DiskOptions, IommuOptions, SimpleOptions, Transport, DEFAULT_BRIDGE,
};
use crate::layout::{VIRTIO_MMIO_START, VIRTIO_MMIO_STRIDE};

/// First IOAPIC pin for virtio-mmio devices (0-4 are the legacy ISA lines
/// dmavm keeps clear of; 4 is COM1).
const FIRST_MMIO_GSI: u32 = 5;
/// Last IOAPIC pin.
const LAST_GSI: u32 = 23;
/// First device number on a PCI root bus (0 is the host bridge).
const FIRST_PCI_SLOT: u8 = 1;
/// Last device number on a PCI bus.
const LAST_PCI_SLOT: u8 = 31;
/// virtio-mmio windows: one per IOAPIC pin from [`FIRST_MMIO_GSI`].
const MMIO_WINDOWS: u32 = LAST_GSI - FIRST_MMIO_GSI + 1;

/// The base of the `index`th virtio-mmio window.
fn mmio_base(index: u32) -> u64 {
    VIRTIO_MMIO_START + u64::from(index) * VIRTIO_MMIO_STRIDE
}

/// Which virtio-mmio window `base` is, if it is one.
fn window_index(base: u64) -> Option<u32> {
    let offset = base.checked_sub(VIRTIO_MMIO_START)?;
    let index = u32::try_from(offset / VIRTIO_MMIO_STRIDE).ok()?;
    (offset % VIRTIO_MMIO_STRIDE == 0 && index < MMIO_WINDOWS).then_some(index)
}

/// The window of device `id`'s `addr=`, or why there is none.
fn mmio_window(id: &str, addr: u64) -> Result<u32> {
    match window_index(addr) {
        Some(index) => Ok(index),
        None => bail!(
            "{id}: addr={addr:#x} is not a virtio-mmio window: use {VIRTIO_MMIO_START:#x} + N * \
             {VIRTIO_MMIO_STRIDE:#x} for N from 0 to {}",
            MMIO_WINDOWS - 1
        ),
    }
}

/// What a device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk over a raw file.
    Disk {
        /// Backing file.
        path: PathBuf,
        /// Whether the guest may write.
        readonly: bool,
    },
    /// virtio-rng.
    Rng,
    /// virtio-console on dmavm's stdio.
    Console,
    /// The virtio-iommu.
    Iommu,
}

impl DeviceKind {
    fn prefix(&self) -> &'static str {
        match self {
            DeviceKind::Disk { .. } => "disk",
            DeviceKind::Rng => "rng",
            DeviceKind::Console => "console",
            DeviceKind::Iommu => "iommu",
        }
    }
}

/// Where a device sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A virtio-mmio window and its IOAPIC pin.
    Mmio {
        /// Window base.
        base: u64,
        /// IOAPIC pin / GSI.
        gsi: u32,
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
    /// Whether it offers `VIRTIO_F_ACCESS_PLATFORM`: exactly when
    /// `direct-ram-access=off`. Without an IOMMU the guest then uses its DMA
    /// API with an identity mapping.
    pub access_platform: bool,
    /// Its endpoint ID in the IOMMU's scope when an IOMMU translates its
    /// accesses (`direct-ram-access=off` with `--iommu`); `None` when it
    /// reaches guest memory directly.
    pub endpoint: Option<u32>,
}

/// The host bridges and devices of the machine, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The PCI host bridges in segment order; `pci0` (segment 0) is always
    /// there.
    pub bridges: Vec<PciBridge>,
    /// The IOMMU first, then disks, RNGs and the console in command-line
    /// order.
    pub devices: Vec<Device>,
    /// The IOMMU's policy on domains mixing coherent and non-coherent
    /// endpoints (`--iommu mixed-coherency=`).
    pub mixed_coherency: MixedCoherency,
}

impl Default for Machine {
    /// No devices, the default host bridge.
    fn default() -> Self {
        Self {
            bridges: vec![PciBridge::default_root()],
            devices: Vec::new(),
            mixed_coherency: MixedCoherency::Allow,
        }
    }
}

/// A device asked for on the command line, before placement.
struct Request<'a> {
    kind: DeviceKind,
    common: &'a Common,
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
    pub fn new(
        bridges: &[BridgeOptions],
        disks: &[DiskOptions],
        rngs: &[SimpleOptions],
        console: Option<&SimpleOptions>,
        iommu: Option<&IommuOptions>,
    ) -> Result<Self> {
        let bridges = bridge::bridges(bridges)?;
        let iommu_common = iommu.map(|i| Common {
            id: i.id.clone(),
            transport: i.transport,
            coherent: None,
            // The IOMMU reaches guest memory directly unless told otherwise
            // (which the checks reject: it cannot be in its own scope).
            direct_ram_access: Some(i.direct_ram_access.unwrap_or(true)),
            bridge: i.bridge.clone(),
            slot: i.slot,
            addr: i.addr,
        });
        let mut requested: Vec<Request<'_>> = Vec::new();
        if let Some(common) = &iommu_common {
            requested.push(Request { kind: DeviceKind::Iommu, common });
        }
        for d in disks {
            let kind = DeviceKind::Disk { path: d.path.clone(), readonly: d.readonly };
            requested.push(Request { kind, common: &d.common });
        }
        for r in rngs {
            requested.push(Request { kind: DeviceKind::Rng, common: &r.common });
        }
        if let Some(c) = console {
            requested.push(Request { kind: DeviceKind::Console, common: &c.common });
        }

        // Places asked for explicitly are kept free of automatic placement,
        // so that only two explicit requests can meet (a coded finding).
        let claimed_slots: Vec<(&str, u8)> = requested
            .iter()
            .filter(|r| r.common.transport == Transport::Pci)
            .filter_map(|r| Some((r.common.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE), r.common.slot?)))
            .collect();
        let claimed_windows: Vec<u64> = requested
            .iter()
            .filter(|r| r.common.transport == Transport::Mmio)
            .filter_map(|r| r.common.addr)
            .collect();

        let mut devices: Vec<Device> = Vec::new();
        let mut next_window = 0u32;
        let mut next_slot: Vec<u8> = vec![FIRST_PCI_SLOT; bridges.len()];
        let mut counts = HashMap::<&str, usize>::new();
        for Request { kind, common } in requested {
            let n = counts.entry(kind.prefix()).or_default();
            let id = common.id.clone().unwrap_or_else(|| format!("{}{n}", kind.prefix()));
            *n += 1;
            if devices.iter().any(|d| d.id == id) {
                bail!("two devices are named '{id}': give each an id=NAME of its own");
            }
            let is_iommu = kind == DeviceKind::Iommu;
            let (placement, dma) = match common.transport {
                Transport::Mmio => {
                    let dma = bridge::resolve_mmio(&id, common)?;
                    if let Some(slot) = common.slot {
                        bail!(
                            "{id}: slot={slot} needs transport=pci: a virtio-mmio device has a window, addr="
                        );
                    }
                    let index = match common.addr {
                        Some(addr) => mmio_window(&id, addr)?,
                        None => {
                            while claimed_windows.contains(&mmio_base(next_window)) {
                                next_window += 1;
                            }
                            next_window += 1;
                            next_window - 1
                        }
                    };
                    if index >= MMIO_WINDOWS {
                        bail!("{id}: too many virtio-mmio devices (at most {MMIO_WINDOWS}); put some on transport=pci");
                    }
                    (Placement::Mmio { base: mmio_base(index), gsi: FIRST_MMIO_GSI + index }, dma)
                }
                Transport::Pci => {
                    if let Some(addr) = common.addr {
                        bail!("{id}: addr={addr:#x} needs transport=mmio: a PCI device has a slot, slot=");
                    }
                    let bridge = bridge::bridge_of(&bridges, &id, common)?;
                    let dma = bridge::resolve_pci(common, bridge, is_iommu);
                    let segment = bridge.segment;
                    let slot = match common.slot {
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
                        bail!(
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
            let endpoint = match (translated, placement) {
                (false, _) => None,
                (true, Placement::Pci { segment, slot }) => Some(pci_endpoint(segment, pci_bdf(slot))),
                (true, Placement::Mmio { base, .. }) => {
                    Some(mmio_endpoint(bridges.len(), window_index(base).unwrap_or(0)))
                }
            };
            devices.push(Device {
                id,
                kind,
                placement,
                coherent: dma.coherent,
                access_platform: !dma.direct_ram_access,
                endpoint,
            });
        }
        let mixed_coherency = iommu.map_or(MixedCoherency::Allow, |i| i.mixed_coherency);
        Ok(Self { bridges, devices, mixed_coherency })
    }

    /// The host bridge a device placed on PCI segment `segment` sits on.
    pub fn bridge(&self, segment: u16) -> Option<&PciBridge> {
        self.bridges.iter().find(|b| b.segment == segment)
    }

    /// The endpoints whose device is declared non-coherent.
    pub fn noncoherent_endpoints(&self) -> Vec<u32> {
        self.devices.iter().filter(|d| !d.coherent).filter_map(|d| d.endpoint).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_options::{parse_bridge, parse_disk, parse_iommu, parse_simple};
    use dmavm_acpi::{ViotIommu, ViotMmioEndpoint, ViotPciRange};

    fn bridges(list: &[&str]) -> Vec<BridgeOptions> {
        list.iter().map(|t| parse_bridge(t).unwrap()).collect()
    }

    #[test]
    fn places_and_names_devices() {
        let disks = [parse_disk("path=a").unwrap(), parse_disk("path=b,coherent=off,id=data").unwrap()];
        let m = Machine::new(&[], &disks, &[parse_simple("").unwrap()], None, None).unwrap();
        let ids: Vec<&str> = m.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["disk0", "data", "rng0"]);
        assert_eq!(m.devices[0].placement, Placement::Mmio { base: 0xd000_0000, gsi: 5 });
        assert_eq!(m.devices[2].placement, Placement::Mmio { base: 0xd000_2000, gsi: 7 });
        assert!(!m.devices[1].coherent);
        assert_eq!(m.bridges, [PciBridge::default_root()]);
    }

    #[test]
    fn pci_devices_take_slots_and_the_bridge_coherency() {
        let disks = [parse_disk("path=a,transport=pci").unwrap(), parse_disk("path=b").unwrap()];
        let m = Machine::new(&[], &disks, &[parse_simple("transport=pci").unwrap()], None, None).unwrap();
        assert_eq!(m.devices[0].placement, Placement::Pci { segment: 0, slot: 1 });
        assert_eq!(m.devices[1].placement, Placement::Mmio { base: 0xd000_0000, gsi: 5 });
        assert_eq!(m.devices[2].placement, Placement::Pci { segment: 0, slot: 2 });
        assert_eq!(m.acpi_virtio_mmio().len(), 1);
        // Another coherency than the bridge's is kept as asked, for the
        // checks to refuse (DMA002).
        let m =
            Machine::new(&[], &[parse_disk("path=a,transport=pci,coherent=off").unwrap()], &[], None, None)
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
        let m = Machine::new(&b, &disks, &[], None, Some(&parse_iommu("").unwrap())).unwrap();
        let placed: Vec<(Placement, bool, bool, Option<u32>)> =
            m.devices.iter().map(|d| (d.placement, d.coherent, d.access_platform, d.endpoint)).collect();
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
        let m = Machine::new(&[], &disks, &[], None, Some(&iommu)).unwrap();
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
        let offers: Vec<bool> = m.devices.iter().map(|d| d.access_platform).collect();
        assert_eq!(offers, [false, true, false, true, true, true, false]);
        assert!(Machine::new(&[], &disks, &[], None, None).unwrap().acpi_viot().is_none());
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
            let err = Machine::new(&b, &disks, &[], None, Some(&iommu)).unwrap_err().to_string();
            assert!(err.contains(needle), "{disk}: {err}");
        }
        let err = Machine::new(&b, &[], &[], None, Some(&parse_iommu("bridge=nope").unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("iommu0: bridge=nope: no such PCI host bridge"), "{err}");
        // The IOMMU itself may sit anywhere, even in a translated hot-pluggable bridge.
        assert!(Machine::new(&b, &[], &[], None, Some(&parse_iommu("bridge=hp").unwrap())).is_ok());
        assert!(Machine::new(&b, &[], &[], None, Some(&parse_iommu("bridge=fast").unwrap())).is_ok());
        // The last window and the last slot exist.
        let last = [
            parse_disk("path=a,addr=0xd0012000").unwrap(),
            parse_disk("path=b,transport=pci,slot=31").unwrap(),
        ];
        let m = Machine::new(&[], &last, &[], None, None).unwrap();
        assert_eq!(m.devices[0].placement, Placement::Mmio { base: 0xd001_2000, gsi: 23 });
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
        let m = Machine::new(&b, &disks, &[], None, Some(&iommu)).unwrap();
        let d: Vec<(Placement, bool, bool, Option<u32>)> =
            m.devices.iter().map(|d| (d.placement, d.coherent, d.access_platform, d.endpoint)).collect();
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
    fn rejects_duplicates_and_too_many() {
        let disks = [parse_disk("path=a,id=x").unwrap(), parse_disk("path=b,id=x").unwrap()];
        assert!(Machine::new(&[], &disks, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("two devices are named 'x'"));
        let many: Vec<_> = (0..20).map(|i| parse_disk(&format!("path=d{i}")).unwrap()).collect();
        assert!(Machine::new(&[], &many, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("too many virtio-mmio"));
        assert!(Machine::new(&[], &many[..19], &[], None, None).is_ok());
        let many: Vec<_> =
            (0..32).map(|i| parse_disk(&format!("path=d{i},transport=pci")).unwrap()).collect();
        let err = Machine::new(&[], &many, &[], None, None).unwrap_err().to_string();
        assert!(err.contains("disk31: too many PCI devices on host bridge pci0 (at most 31)"), "{err}");
        assert!(Machine::new(&[], &many[..31], &[], None, None).is_ok());
    }
}
