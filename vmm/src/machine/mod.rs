//! The machine model: which devices the VM has, where they sit, what they
//! declare. The one place the DMA-contract policy lives; the ACPI tables
//! (and later `describe` and the device tree) are generated from it, so
//! they cannot disagree with the devices that run.

mod acpi;
mod bridge;
mod scope;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use dmavm_iommu::MixedCoherency;

pub use bridge::PciBridge;
pub use scope::{mmio_endpoint, pci_bdf, pci_endpoint};

use crate::device_options::{BridgeOptions, Common, DiskOptions, IommuOptions, SimpleOptions, Transport};
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
    /// to its bridge, and rejecting duplicates, what cannot be built and
    /// what the firmware tables could not declare truthfully.
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
            // The IOMMU reaches guest memory directly: it is never in its
            // own scope (resolved as such wherever it sits).
            direct_ram_access: Some(true),
            bridge: i.bridge.clone(),
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

        let mut devices: Vec<Device> = Vec::new();
        let mut mmio_index = 0u32;
        let mut next_slot: Vec<u8> = vec![FIRST_PCI_SLOT; bridges.len()];
        let mut counts = HashMap::<&str, usize>::new();
        let mut warnings: Vec<String> = Vec::new();
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
                    let gsi = FIRST_MMIO_GSI + mmio_index;
                    if gsi > LAST_GSI {
                        bail!(
                            "{id}: too many virtio-mmio devices (at most {}); put some on transport=pci",
                            LAST_GSI - FIRST_MMIO_GSI + 1
                        );
                    }
                    let base = VIRTIO_MMIO_START + u64::from(mmio_index) * VIRTIO_MMIO_STRIDE;
                    mmio_index += 1;
                    if !dma.coherent {
                        warnings.push(format!(
                            "{id}: declared coherent=off, but dmavm accesses guest memory through cacheable                              mappings: only truthful for testing a guest's cache-maintenance paths"
                        ));
                    }
                    (Placement::Mmio { base, gsi }, dma)
                }
                Transport::Pci => {
                    let bridge = bridge::bridge_of(&bridges, &id, common)?;
                    let dma = bridge::resolve_pci(&id, common, bridge, is_iommu)?;
                    let segment = bridge.segment;
                    let slot = &mut next_slot[usize::from(segment)];
                    if *slot > LAST_PCI_SLOT {
                        bail!(
                            "{id}: too many PCI devices on host bridge {} (at most {}); add a bridge with                              --pci-bridge id=NAME and put some there with bridge=NAME",
                            bridge.id,
                            LAST_PCI_SLOT - FIRST_PCI_SLOT + 1
                        );
                    }
                    *slot += 1;
                    (Placement::Pci { segment, slot: *slot - 1 }, dma)
                }
            };
            let translated = iommu.is_some() && !dma.direct_ram_access && !is_iommu;
            let endpoint = match (translated, placement) {
                (false, _) => None,
                (true, Placement::Pci { segment, slot }) => Some(pci_endpoint(segment, pci_bdf(slot))),
                (true, Placement::Mmio { .. }) => Some(mmio_endpoint(bridges.len(), mmio_index - 1)),
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
        // Warned only once the whole machine holds together, so that a
        // rejected configuration gets its one error line and nothing else.
        for b in bridges.iter().filter(|b| !b.coherent) {
            log::warn!(
                "host bridge {}: declared coherent=off (_CCA 0 on segment {}), but dmavm accesses guest memory \
                 through cacheable mappings: only truthful for testing a guest's cache-maintenance paths",
                b.id,
                b.segment
            );
        }
        for w in warnings {
            log::warn!("{w}");
        }
        let mixed_coherency = iommu.map_or(MixedCoherency::Allow, |i| i.mixed_coherency);
        Ok(Self { bridges, devices, mixed_coherency })
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
        let err =
            Machine::new(&[], &[parse_disk("path=a,transport=pci,coherent=off").unwrap()], &[], None, None)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("disk0: coherent=off conflicts with its host bridge pci0 (coherent=on)"),
            "{err}"
        );
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
    fn rejected_configurations_say_why() {
        let b = bridges(&["id=fast,direct-ram-access=on", "id=hp,hotplug=on", "id=slow,coherent=off"]);
        let iommu = parse_iommu("").unwrap();
        for (disk, needle) in [
            (
                "transport=pci,bridge=fast,direct-ram-access=off",
                "disk0: direct-ram-access=off is impossible on host bridge fast",
            ),
            (
                "transport=pci,bridge=hp,direct-ram-access=on",
                "disk0: direct-ram-access=on is not allowed on host bridge hp",
            ),
            (
                "transport=pci,bridge=slow,coherent=on",
                "disk0: coherent=on conflicts with its host bridge slow (coherent=off)",
            ),
            ("transport=pci,bridge=nope", "disk0: bridge=nope: no such PCI host bridge"),
            ("bridge=fast", "disk0: bridge=fast needs transport=pci"),
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
