//! The Intel VT-d remapping hardware units of a `--iommu type=vtd`
//! machine, as the ACPI DMAR declares them (VT-d 4.1, chapter 8) and the
//! VM runner builds them.
//!
//! One unit (a DRHD) per PCI segment with translated functions, so that a
//! segment's functions share one unit's root table, as one root complex's
//! do on hardware. Its device scope lists exactly the translated functions
//! as PCI endpoints; only a translated `hotplug=on` bridge, whose every
//! slot is in scope whatever is plugged in later, gets the whole segment
//! (`INCLUDE_PCI_ALL`). A function outside every scope is not translated:
//! Linux's intel-iommu finds no unit for it and gives it direct DMA.
//!
//! The units take no PCI slot and are not devices of [`Machine::devices`];
//! a translated function keeps its endpoint ID `segment << 16 | BDF`
//! ([`crate::endpoint_id`]), which is the source ID a unit sees on its
//! segment.

use dmavm_acpi::{Dmar, DmarScope, DmarUnit};

use crate::endpoint_id::pci_bdf;
use crate::layout::x86_64::{VTD_REGISTERS_SIZE, VTD_REGISTERS_START};
use crate::{Machine, Placement};

/// The guest-physical address width the units translate to and the DMAR declares (its host
/// address width): 48 bits, what 4-level second-level tables (SAGAW bit 2) reach, and more
/// than any dmavm machine's RAM and windows span. The device model's CAP.MGAW says the same.
pub const VTD_ADDRESS_WIDTH: u8 = 48;

/// What a unit translates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VtdScope {
    /// Every function of its segment, present or plugged in later
    /// (`INCLUDE_PCI_ALL`).
    WholeSegment,
    /// These functions (requester IDs, bus 0), each a PCI-endpoint device
    /// scope entry, in BDF order.
    Functions(Vec<u16>),
}

/// One VT-d remapping hardware unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtdUnit {
    /// Its position among the machine's units, from 0.
    pub index: usize,
    /// The PCI segment it serves.
    pub segment: u16,
    /// The guest-physical base of its register window
    /// ([`VTD_REGISTERS_SIZE`] bytes).
    pub register_base: u64,
    /// Page-walk coherency (ECAP.C): its reads of root, context and page
    /// tables snoop the CPU caches.
    pub coherent: bool,
    /// What it translates.
    pub scope: VtdScope,
}

impl VtdUnit {
    /// Whether the function with requester ID `bdf` on `segment` is in
    /// its scope.
    pub fn covers(&self, segment: u16, bdf: u16) -> bool {
        self.segment == segment
            && match &self.scope {
                VtdScope::WholeSegment => true,
                VtdScope::Functions(list) => list.contains(&bdf),
            }
    }

    /// Its name in messages and `describe`: `dmar0`, `dmar1`, ... as
    /// Linux names the units it finds.
    pub fn name(&self) -> String {
        format!("dmar{}", self.index)
    }
}

/// The VT-d of a machine: its coherency and its units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vtd {
    /// `--iommu type=vtd,coherent=`: every unit's page-walk coherency.
    pub coherent: bool,
    /// The units in segment order; empty when no function is translated
    /// (the machine then has no DMAR).
    pub units: Vec<VtdUnit>,
}

impl Machine {
    /// The VT-d units of this machine: empty without `--iommu type=vtd`.
    pub fn vtd_units(&self) -> &[VtdUnit] {
        self.vtd.as_ref().map_or(&[], |v| v.units.as_slice())
    }

    /// The unit whose scope holds the function `bdf` of `segment`.
    pub fn vtd_unit_of(&self, segment: u16, bdf: u16) -> Option<&VtdUnit> {
        self.vtd_units().iter().find(|u| u.covers(segment, bdf))
    }

    /// The DMAR of this machine: one DRHD per unit; `None` without units (a DMAR without a DRHD
    /// is a broken table to Linux).
    pub fn acpi_dmar(&self) -> Option<Dmar> {
        let units: Vec<DmarUnit> = self
            .vtd_units()
            .iter()
            .map(|u| DmarUnit {
                segment: u.segment,
                register_base: u.register_base,
                scope: match &u.scope {
                    VtdScope::WholeSegment => DmarScope::IncludePciAll,
                    VtdScope::Functions(list) => DmarScope::Endpoints(list.clone()),
                },
            })
            .collect();
        (!units.is_empty()).then_some(Dmar { host_address_width: VTD_ADDRESS_WIDTH, units })
    }

    /// The units the placed bridges and devices call for, with page-walk
    /// coherency `coherent`.
    pub(crate) fn vtd_units_for(&self, coherent: bool) -> Vec<VtdUnit> {
        let mut units = Vec::new();
        for bridge in &self.bridges {
            let segment = bridge.segment;
            let scope = if bridge.hotplug && !bridge.direct_ram_access {
                VtdScope::WholeSegment
            } else {
                let mut functions: Vec<u16> = self
                    .devices
                    .iter()
                    .filter(|d| d.dma.endpoint().is_some())
                    .filter_map(|d| match d.placement {
                        Placement::Pci { segment: s, slot } if s == segment => Some(pci_bdf(slot)),
                        _ => None,
                    })
                    .collect();
                if functions.is_empty() {
                    continue;
                }
                functions.sort_unstable();
                functions.dedup();
                VtdScope::Functions(functions)
            };
            let index = units.len();
            units.push(VtdUnit {
                index,
                segment,
                register_base: VTD_REGISTERS_START + VTD_REGISTERS_SIZE * index as u64,
                coherent,
                scope,
            });
        }
        units
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint_id::pci_endpoint;
    use crate::test_utils::{machine_for, options};
    use crate::{Arch, DeviceKind, DmaPath};

    fn units(args: &[&str]) -> Vec<VtdUnit> {
        machine_for(Arch::X86_64, args).vtd_units().to_vec()
    }

    #[test]
    fn one_unit_per_segment_with_translated_functions() {
        let m = machine_for(
            Arch::X86_64,
            &[
                "--iommu",
                "type=vtd",
                "--pci-bridge",
                "id=fast,direct-ram-access=on",
                "--pci-bridge",
                "id=more",
                "--disk",
                "path=a,transport=pci",
                "--disk",
                "path=b,transport=pci,direct-ram-access=on",
                "--disk",
                "path=c,transport=pci,bridge=fast",
                "--rng",
                "transport=pci,bridge=more,slot=5",
                "--rng",
                "transport=pci",
            ],
        );
        // No virtio-iommu: the disk takes slot 1.
        assert!(m.devices.iter().all(|d| d.kind != DeviceKind::Iommu));
        let paths: Vec<DmaPath> = m.devices.iter().map(|d| d.dma).collect();
        assert_eq!(
            paths,
            [
                DmaPath::Translated { endpoint: pci_endpoint(0, 0x08) },
                DmaPath::Direct,
                DmaPath::Direct,
                DmaPath::Translated { endpoint: pci_endpoint(2, 0x28) },
                DmaPath::Translated { endpoint: pci_endpoint(0, 0x18) },
            ]
        );
        assert_eq!(
            m.vtd_units(),
            [
                VtdUnit {
                    index: 0,
                    segment: 0,
                    register_base: 0xfed9_0000,
                    coherent: true,
                    scope: VtdScope::Functions(vec![0x08, 0x18]),
                },
                VtdUnit {
                    index: 1,
                    segment: 2,
                    register_base: 0xfed9_1000,
                    coherent: true,
                    scope: VtdScope::Functions(vec![0x28]),
                },
            ]
        );
        assert_eq!(m.vtd_unit_of(2, 0x28).map(VtdUnit::name).as_deref(), Some("dmar1"));
        assert_eq!(m.vtd_unit_of(0, 0x10), None, "the bypassing disk is in no scope");
        assert_eq!(m.vtd_unit_of(1, 0x08), None, "nor the bypassing bridge's");
    }

    #[test]
    fn a_translated_hot_pluggable_bridge_is_in_scope_whole() {
        let u = units(&[
            "--iommu",
            "type=vtd,coherent=off",
            "--pci-bridge",
            "id=hp,hotplug=on",
            "--pci-bridge",
            "id=hpb,hotplug=on,direct-ram-access=on",
            "--disk",
            "path=a,transport=pci,bridge=hpb",
        ]);
        assert_eq!(
            u,
            [VtdUnit {
                index: 0,
                segment: 1,
                register_base: 0xfed9_0000,
                coherent: false,
                scope: VtdScope::WholeSegment,
            }]
        );
        assert!(u[0].covers(1, 0xf8) && !u[0].covers(0, 0x08));
    }

    #[test]
    fn the_dmar_has_a_drhd_per_unit() {
        let m = machine_for(
            Arch::X86_64,
            &[
                "--iommu",
                "type=vtd",
                "--pci-bridge",
                "id=hp,hotplug=on",
                "--disk",
                "path=a,transport=pci",
                "--rng",
                "transport=pci,slot=7",
            ],
        );
        let dmar = m.acpi_dmar().unwrap();
        assert_eq!(dmar.host_address_width, 48);
        assert_eq!(
            dmar.units,
            [
                DmarUnit {
                    segment: 0,
                    register_base: 0xfed9_0000,
                    scope: DmarScope::Endpoints(vec![0x08, 0x38])
                },
                DmarUnit { segment: 1, register_base: 0xfed9_1000, scope: DmarScope::IncludePciAll },
            ]
        );
        let tables = m.acpi_tables().unwrap();
        assert!(tables.find(*b"DMAR").is_some());
        assert!(tables.find(*b"VIOT").is_none(), "one IOMMU, one table");
        // Without units, no DMAR.
        let m = machine_for(
            Arch::X86_64,
            &["--iommu", "type=vtd", "--disk", "path=a,transport=pci,direct-ram-access=on"],
        );
        assert_eq!(m.acpi_dmar(), None);
        assert!(m.acpi_tables().unwrap().find(*b"DMAR").is_none());
        let m = machine_for(Arch::X86_64, &["--iommu", "--disk", "path=a,transport=pci"]);
        assert!(m.acpi_tables().unwrap().find(*b"DMAR").is_none());
    }

    #[test]
    fn no_translated_function_no_unit() {
        assert_eq!(
            units(&["--iommu", "type=vtd", "--disk", "path=a,transport=pci,direct-ram-access=on"]),
            []
        );
        assert_eq!(units(&["--disk", "path=a,transport=pci"]), []);
        // A virtio-iommu machine has none either.
        assert_eq!(units(&["--iommu", "--disk", "path=a,transport=pci"]), []);
        let m = Machine::new(&options(&["--iommu", "type=vtd"]), Arch::X86_64).unwrap();
        assert_eq!(m.vtd, Some(Vtd { coherent: true, units: vec![] }));
    }

    #[test]
    fn every_segment_can_have_a_unit_below_the_local_apics() {
        let mut args: Vec<String> =
            vec!["--iommu".into(), "type=vtd".into(), "--disk".into(), "path=a,transport=pci".into()];
        for i in 1..16 {
            args.extend([
                "--pci-bridge".into(),
                format!("id=b{i}"),
                "--rng".into(),
                format!("transport=pci,bridge=b{i}"),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let u = units(&args);
        assert_eq!(u.len(), 16);
        assert_eq!(u[15].register_base, 0xfed9_f000);
        assert!(u[15].register_base + VTD_REGISTERS_SIZE <= crate::layout::x86_64::LOCAL_APIC_ADDR);
    }
}
