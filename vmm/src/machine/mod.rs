//! The machine model: which devices the VM has, where they sit, what they
//! declare. The one place the DMA-contract policy lives; the ACPI tables
//! (and later `describe` and the device tree) are generated from it, so
//! they cannot disagree with the devices that run.

use std::path::PathBuf;

use anyhow::{bail, Result};
use dmavm_acpi::{PciRoot, Viot, ViotIommu, ViotMmioEndpoint, ViotPciRange, VirtioMmioDevice};

use crate::device_options::{Common, DiskOptions, IommuOptions, SimpleOptions, Transport};
use crate::layout::{
    pci_mem64_window, PCI_ECAM_START, PCI_MEM32_END, PCI_MEM32_START, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START,
    VIRTIO_MMIO_STRIDE,
};

/// First IOAPIC pin for virtio-mmio devices (0-4 are the legacy ISA lines
/// dmavm keeps clear of; 4 is COM1).
const FIRST_MMIO_GSI: u32 = 5;
/// Last IOAPIC pin.
const LAST_GSI: u32 = 23;
/// First device number on PCI bus 0 (0 is the host bridge).
const FIRST_PCI_SLOT: u8 = 1;
/// Last device number on a PCI bus.
const LAST_PCI_SLOT: u8 = 31;
/// The host bridge's declared coherency (`--pci-bridge` will make it
/// configurable): dmavm's device models access guest memory cacheably.
pub const PCI_ROOT_COHERENT: bool = true;

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
    /// A function on bus 0 of the PCI host bridge (segment 0); interrupts
    /// are MSI-X.
    Pci {
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
    /// Declared DMA coherency.
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

/// First endpoint ID of virtio-mmio devices in the IOMMU's scope: above
/// every PCI requester ID (16 bits), which PCI endpoints use as theirs.
const FIRST_MMIO_ENDPOINT: u32 = 0x1_0000;

/// The requester ID of function 0 of `slot` on bus 0.
pub fn pci_bdf(slot: u8) -> u16 {
    u16::from(slot) << 3
}

/// The devices of the machine, placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// In command-line order (disks, then RNGs).
    pub devices: Vec<Device>,
}

impl Machine {
    /// Places the devices given on the command line, naming unnamed ones
    /// `<kind><n>` and rejecting duplicates and what cannot be built.
    pub fn new(
        disks: &[DiskOptions],
        rngs: &[SimpleOptions],
        console: Option<&SimpleOptions>,
        iommu: Option<&IommuOptions>,
    ) -> Result<Self> {
        let iommu_common = iommu.map(|i| Common {
            id: i.id.clone(),
            transport: i.transport,
            coherent: true,
            // The IOMMU reaches guest memory directly: it is never in its
            // own scope.
            direct_ram_access: true,
        });
        let mut requested: Vec<(DeviceKind, &Common)> = Vec::new();
        if let Some(c) = &iommu_common {
            requested.push((DeviceKind::Iommu, c));
        }
        for d in disks {
            requested.push((DeviceKind::Disk { path: d.path.clone(), readonly: d.readonly }, &d.common));
        }
        for r in rngs {
            requested.push((DeviceKind::Rng, &r.common));
        }
        if let Some(c) = console {
            requested.push((DeviceKind::Console, &c.common));
        }

        let mut machine = Machine::default();
        let mut mmio_index = 0u32;
        let mut pci_slot = FIRST_PCI_SLOT;
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        for (kind, common) in requested {
            let n = counts.entry(kind.prefix()).or_default();
            let id = common.id.clone().unwrap_or_else(|| format!("{}{n}", kind.prefix()));
            *n += 1;
            if machine.devices.iter().any(|d| d.id == id) {
                bail!("two devices are named '{id}': give each an id=NAME of its own");
            }
            let placement = match common.transport {
                Transport::Mmio => {
                    let gsi = FIRST_MMIO_GSI + mmio_index;
                    if gsi > LAST_GSI {
                        bail!(
                            "{id}: too many virtio-mmio devices (at most {}); put some on transport=pci",
                            LAST_GSI - FIRST_MMIO_GSI + 1
                        );
                    }
                    let base = VIRTIO_MMIO_START + u64::from(mmio_index) * VIRTIO_MMIO_STRIDE;
                    mmio_index += 1;
                    Placement::Mmio { base, gsi }
                }
                Transport::Pci => {
                    if common.coherent != PCI_ROOT_COHERENT {
                        bail!(
                            "{id}: coherent=off is impossible on transport=pci: a PCI device's DMA coherency is \
                             its host bridge's (_CCA on the root), and the only host bridge is coherent=on; \
                             use transport=mmio for a non-coherent device"
                        );
                    }
                    if pci_slot > LAST_PCI_SLOT {
                        bail!("{id}: too many PCI devices (at most {})", LAST_PCI_SLOT - FIRST_PCI_SLOT + 1);
                    }
                    pci_slot += 1;
                    Placement::Pci { slot: pci_slot - 1 }
                }
            };
            if !common.coherent {
                log::warn!(
                    "{id}: declared coherent=off, but dmavm accesses guest memory through cacheable mappings: \
                     only truthful for testing a guest's cache-maintenance paths"
                );
            }
            let translated = iommu.is_some() && !common.direct_ram_access && kind != DeviceKind::Iommu;
            let endpoint = match (translated, placement) {
                (false, _) => None,
                (true, Placement::Pci { slot }) => Some(u32::from(pci_bdf(slot))),
                (true, Placement::Mmio { .. }) => Some(FIRST_MMIO_ENDPOINT + mmio_index - 1),
            };
            machine.devices.push(Device {
                id,
                kind,
                placement,
                coherent: common.coherent,
                access_platform: !common.direct_ram_access,
                endpoint,
            });
        }
        Ok(machine)
    }

    /// The VIOT: the IOMMU and exactly the endpoints it translates, PCI
    /// functions as ranges split around the bypassed ones (and around the
    /// IOMMU itself).
    pub fn acpi_viot(&self) -> Option<Viot> {
        let iommu = self.devices.iter().find(|d| d.kind == DeviceKind::Iommu)?;
        let iommu = match iommu.placement {
            Placement::Pci { slot } => ViotIommu::Pci { segment: 0, bdf: pci_bdf(slot) },
            Placement::Mmio { base, .. } => ViotIommu::Mmio { base },
        };
        let mut translated_slots: Vec<u8> = self
            .devices
            .iter()
            .filter(|d| d.endpoint.is_some())
            .filter_map(|d| match d.placement {
                Placement::Pci { slot } => Some(slot),
                Placement::Mmio { .. } => None,
            })
            .collect();
        translated_slots.sort_unstable();
        let mut pci_ranges: Vec<ViotPciRange> = Vec::new();
        for slot in translated_slots {
            match pci_ranges.last_mut() {
                // Adjacent slot: extend the run (functions 1-7 of the
                // previous slot are absent, so covering them is harmless).
                Some(r) if r.bdf_end + 1 == pci_bdf(slot) => r.bdf_end = pci_bdf(slot) | 7,
                _ => pci_ranges.push(ViotPciRange {
                    segment: 0,
                    bdf_start: pci_bdf(slot),
                    bdf_end: pci_bdf(slot) | 7,
                    endpoint_start: u32::from(pci_bdf(slot)),
                }),
            }
        }
        let mmio_endpoints = self
            .devices
            .iter()
            .filter_map(|d| match (d.placement, d.endpoint) {
                (Placement::Mmio { base, .. }, Some(endpoint)) => Some(ViotMmioEndpoint { base, endpoint }),
                _ => None,
            })
            .collect();
        Some(Viot { iommu, pci_ranges, mmio_endpoints })
    }

    /// The virtio-mmio devices as the ACPI tables declare them.
    pub fn acpi_virtio_mmio(&self) -> Vec<VirtioMmioDevice> {
        self.devices
            .iter()
            .filter_map(|d| match d.placement {
                Placement::Mmio { base, gsi } => Some(VirtioMmioDevice {
                    base: base as u32,
                    size: VIRTIO_MMIO_SIZE as u32,
                    gsi,
                    coherent: d.coherent,
                }),
                Placement::Pci { .. } => None,
            })
            .collect()
    }

    /// The PCI host bridge as the ACPI tables declare it. It is always
    /// there (without one a guest probes for PCI and complains), on
    /// segment 0 with 256 buses, and coherent.
    pub fn acpi_pci_roots(&self, memory: u64) -> Vec<PciRoot> {
        let mem64 = pci_mem64_window(memory);
        vec![PciRoot {
            segment: 0,
            bus_start: 0,
            bus_end: 0xff,
            ecam_base: PCI_ECAM_START,
            mem32: (PCI_MEM32_START as u32, (PCI_MEM32_END - PCI_MEM32_START) as u32),
            mem64: (mem64.start, mem64.end - mem64.start),
            coherent: PCI_ROOT_COHERENT,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_options::{parse_disk, parse_simple};

    #[test]
    fn places_and_names_devices() {
        let disks = [parse_disk("path=a").unwrap(), parse_disk("path=b,coherent=off,id=data").unwrap()];
        let m = Machine::new(&disks, &[parse_simple("").unwrap()], None, None).unwrap();
        let ids: Vec<&str> = m.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["disk0", "data", "rng0"]);
        assert_eq!(m.devices[0].placement, Placement::Mmio { base: 0xd000_0000, gsi: 5 });
        assert_eq!(m.devices[2].placement, Placement::Mmio { base: 0xd000_2000, gsi: 7 });
        let acpi = m.acpi_virtio_mmio();
        assert_eq!(acpi[1], VirtioMmioDevice { base: 0xd000_1000, size: 0x200, gsi: 6, coherent: false });
    }

    #[test]
    fn pci_devices_take_slots_and_the_bridge_coherency() {
        let disks = [parse_disk("path=a,transport=pci").unwrap(), parse_disk("path=b").unwrap()];
        let m = Machine::new(&disks, &[parse_simple("transport=pci").unwrap()], None, None).unwrap();
        assert_eq!(m.devices[0].placement, Placement::Pci { slot: 1 });
        assert_eq!(m.devices[1].placement, Placement::Mmio { base: 0xd000_0000, gsi: 5 });
        assert_eq!(m.devices[2].placement, Placement::Pci { slot: 2 });
        assert_eq!(m.acpi_virtio_mmio().len(), 1);
        let err = Machine::new(&[parse_disk("path=a,transport=pci,coherent=off").unwrap()], &[], None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk0: coherent=off is impossible on transport=pci"), "{err}");
    }

    #[test]
    fn viot_scope_is_exactly_the_translated_devices() {
        use crate::device_options::parse_iommu;
        let disks = [
            parse_disk("path=a,transport=pci").unwrap(),
            parse_disk("path=b,transport=pci,direct-ram-access=on").unwrap(),
            parse_disk("path=c,transport=pci").unwrap(),
            parse_disk("path=d,transport=pci").unwrap(),
            parse_disk("path=e").unwrap(),
            parse_disk("path=f,direct-ram-access=on").unwrap(),
        ];
        let iommu = parse_iommu("").unwrap();
        let m = Machine::new(&disks, &[], None, Some(&iommu)).unwrap();
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
        assert!(Machine::new(&disks, &[], None, None).unwrap().acpi_viot().is_none());
    }

    #[test]
    fn rejects_duplicates_and_too_many() {
        let disks = [parse_disk("path=a,id=x").unwrap(), parse_disk("path=b,id=x").unwrap()];
        assert!(Machine::new(&disks, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("two devices are named 'x'"));
        let many: Vec<_> = (0..20).map(|i| parse_disk(&format!("path=d{i}")).unwrap()).collect();
        assert!(Machine::new(&many, &[], None, None)
            .unwrap_err()
            .to_string()
            .contains("too many virtio-mmio"));
        assert!(Machine::new(&many[..19], &[], None, None).is_ok());
    }
}
