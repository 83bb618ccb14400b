//! The IOMMU's scope as the ACPI VIOT declares it, with the endpoint IDs
//! of [`crate::endpoint_id`].
//!
//! Linux derives a PCI function's endpoint ID from a VIOT PCI-range node as
//! `((segment - segment_start) << 16) + bdf - bdf_start + endpoint_start`
//! (`viot_pci_dev_iommu_init()` in drivers/acpi/viot.c); each range here
//! spans one segment and starts at endpoint `s << 16 | bdf_start`, which
//! gives exactly the ID above. Cloud Hypervisor numbers PCI endpoints the
//! same way (segment in the upper 16 bits).

use dmavm_acpi::{Viot, ViotIommu, ViotMmioEndpoint, ViotPciRange};

use crate::endpoint_id::{pci_bdf, pci_endpoint};
use crate::placement::{FIRST_PCI_SLOT, LAST_PCI_SLOT};
use crate::{DeviceKind, Machine, Placement};

/// Merges slots of one segment into VIOT PCI ranges (function 0 through 7
/// of each slot, adjacent slots in one range).
fn ranges(segment: u16, slots: impl IntoIterator<Item = u8>) -> Vec<ViotPciRange> {
    let mut out: Vec<ViotPciRange> = Vec::new();
    for slot in slots {
        let bdf = pci_bdf(slot);
        match out.last_mut() {
            // Adjacent slot: extend the run (functions 1-7 of the previous
            // slot are absent, so covering them is harmless).
            Some(r) if u32::from(r.bdf_end) + 1 == u32::from(bdf) => r.bdf_end = bdf | 7,
            _ => out.push(ViotPciRange {
                segment,
                bdf_start: bdf,
                bdf_end: bdf | 7,
                endpoint_start: pci_endpoint(segment, bdf),
            }),
        }
    }
    out
}

impl Machine {
    /// The VIOT: the IOMMU and exactly the endpoints it translates, per
    /// segment. A bypassing bridge contributes no range; on a translated
    /// bridge the ranges split around bypassing functions and around the
    /// IOMMU itself; a translated `hotplug=on` bridge is covered slot 1 to
    /// 31, present or not (but for the IOMMU), so a device plugged in later
    /// is in scope as the tables said at boot.
    pub fn acpi_viot(&self) -> Option<Viot> {
        let iommu = self.devices.iter().find(|d| d.kind == DeviceKind::Iommu)?;
        let iommu_at = iommu.placement;
        let iommu = match iommu.placement {
            Placement::Pci { segment, slot } => ViotIommu::Pci { segment, bdf: pci_bdf(slot) },
            Placement::Mmio { window } => ViotIommu::Mmio { base: self.mmio_window(window)?.base },
        };
        let mut pci_ranges = Vec::new();
        for bridge in &self.bridges {
            let segment = bridge.segment;
            let mut slots: Vec<u8> = if bridge.hotplug && !bridge.direct_ram_access {
                (FIRST_PCI_SLOT..=LAST_PCI_SLOT)
                    .filter(|&slot| iommu_at != (Placement::Pci { segment, slot }))
                    .collect()
            } else {
                self.devices
                    .iter()
                    .filter(|d| d.dma.endpoint().is_some())
                    .filter_map(|d| match d.placement {
                        Placement::Pci { segment: s, slot } if s == segment => Some(slot),
                        _ => None,
                    })
                    .collect()
            };
            slots.sort_unstable();
            pci_ranges.extend(ranges(segment, slots));
        }
        let mmio_endpoints = self
            .devices
            .iter()
            .filter_map(|d| match (d.placement, d.dma.endpoint()) {
                (Placement::Mmio { window }, Some(endpoint)) => {
                    Some(ViotMmioEndpoint { base: self.mmio_window(window)?.base, endpoint })
                }
                _ => None,
            })
            .collect();
        Some(Viot { iommu, pci_ranges, mmio_endpoints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint_id::{mmio_endpoint, pci_endpoint};
    use crate::options::{parse_bridge, parse_disk, parse_iommu, BridgeOptions};
    use crate::test_utils::new_machine;

    fn bridges(list: &[&str]) -> Vec<BridgeOptions> {
        list.iter().map(|t| parse_bridge(t).unwrap()).collect()
    }

    #[test]
    fn endpoint_ids_never_collide_across_segments() {
        assert_eq!(pci_endpoint(0, 0x08), 0x08);
        assert_eq!(pci_endpoint(1, 0x08), 0x1_0008);
        assert_eq!(pci_endpoint(15, 0xff), 0xf_00ff);
        assert_eq!(mmio_endpoint(1, 0), 0x1_0000, "one bridge: mmio endpoints from 0x10000");
        assert_eq!(mmio_endpoint(3, 2), 0x3_0002);
        assert!(mmio_endpoint(16, 0) > pci_endpoint(15, 0xffff));
    }

    #[test]
    fn each_segment_its_own_ranges_and_bypassing_bridges_none() {
        let disks = [
            parse_disk("path=a,transport=pci").unwrap(), // pci0 00:02.0
            parse_disk("path=b,transport=pci,bridge=fast").unwrap(), // 0001:00:01.0, bypass
            parse_disk("path=c,transport=pci,bridge=mixed").unwrap(), // 0002:00:01.0
            parse_disk("path=d,transport=pci,bridge=mixed,direct-ram-access=on").unwrap(), // 0002:00:02.0
            parse_disk("path=e,transport=pci,bridge=mixed").unwrap(), // 0002:00:03.0
            parse_disk("path=f").unwrap(),               // mmio
        ];
        let b = bridges(&["id=fast,direct-ram-access=on", "id=mixed"]);
        let m = new_machine(&b, &disks, &[], None, Some(&parse_iommu("").unwrap())).unwrap();
        let endpoints: Vec<Option<u32>> = m.devices.iter().map(|d| d.dma.endpoint()).collect();
        assert_eq!(endpoints, [None, Some(0x10), None, Some(0x2_0008), None, Some(0x2_0018), Some(0x3_0000)]);
        let viot = m.acpi_viot().unwrap();
        assert_eq!(viot.iommu, ViotIommu::Pci { segment: 0, bdf: 0x08 });
        assert_eq!(
            viot.pci_ranges,
            [
                ViotPciRange { segment: 0, bdf_start: 0x10, bdf_end: 0x17, endpoint_start: 0x10 },
                ViotPciRange { segment: 2, bdf_start: 0x08, bdf_end: 0x0f, endpoint_start: 0x2_0008 },
                ViotPciRange { segment: 2, bdf_start: 0x18, bdf_end: 0x1f, endpoint_start: 0x2_0018 },
            ]
        );
        assert_eq!(viot.mmio_endpoints, [ViotMmioEndpoint { base: 0xd000_0000, endpoint: 0x3_0000 }]);
    }

    #[test]
    fn the_iommu_on_another_segment_stays_outside_its_scope() {
        let disks = [
            parse_disk("path=a,transport=pci,bridge=io").unwrap(),
            parse_disk("path=b,transport=pci").unwrap(),
        ];
        let b = bridges(&["id=io"]);
        let m = new_machine(&b, &disks, &[], None, Some(&parse_iommu("bridge=io").unwrap())).unwrap();
        let viot = m.acpi_viot().unwrap();
        assert_eq!(viot.iommu, ViotIommu::Pci { segment: 1, bdf: 0x08 });
        assert_eq!(
            viot.pci_ranges,
            [
                ViotPciRange { segment: 0, bdf_start: 0x08, bdf_end: 0x0f, endpoint_start: 0x08 },
                ViotPciRange { segment: 1, bdf_start: 0x10, bdf_end: 0x17, endpoint_start: 0x1_0010 },
            ]
        );
    }

    #[test]
    fn a_hot_pluggable_bridge_is_covered_whole_but_for_the_iommu() {
        let disks = [parse_disk("path=a,transport=pci,bridge=hp").unwrap()];
        let b = bridges(&["id=hp,hotplug=on", "id=hpb,hotplug=on,direct-ram-access=on"]);
        let iommu = parse_iommu("bridge=hp").unwrap();
        let m = new_machine(&b, &disks, &[], None, Some(&iommu)).unwrap();
        let viot = m.acpi_viot().unwrap();
        // The IOMMU at 0001:00:01.0, the disk at 0001:00:02.0; the rest of
        // the slots are empty but in scope. The bypassing hot-pluggable
        // bridge has no range.
        assert_eq!(
            viot.pci_ranges,
            [ViotPciRange { segment: 1, bdf_start: 0x10, bdf_end: 0xff, endpoint_start: 0x1_0010 }]
        );
        assert_eq!(m.devices[1].dma.endpoint(), Some(0x1_0010));
    }
}
