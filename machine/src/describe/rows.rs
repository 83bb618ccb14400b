//! The rows `describe` prints: one per host bridge and per device, the
//! model's DMA properties next to the firmware objects that declare them.
//!
//! Every value comes from the machine model or from the firmware
//! description the tables are built from (the ACPI crate's
//! [`dmavm_acpi::Platform`], the fdt crate's [`dmavm_fdt::Machine`]), so a
//! row says what the guest is told. The object names follow the encoders'
//! rules: the DSDT names virtio-mmio devices `VRnn` and host bridges
//! `PCIn` by position (hex), in `\_SB_` (acpi/src/dsdt.rs, acpi/src/pci.rs);
//! the device tree names nodes after their first address (fdt/src/encode.rs).
//! The tests decode the real bytes and check both.

use std::fmt;

use dmavm_acpi::{DmarScope, Platform, ViotIommu};
use dmavm_fdt::{PciIommuScope, PciRoot};
use serde::{Deserialize, Serialize};

use crate::checks::Finding;
use crate::{pci_bdf, Arch, Device, DeviceKind, Machine, PciBridge, Placement};

/// Everything `describe` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Whose firmware the rows name.
    pub arch: Arch,
    /// Host bridges in segment order, then devices in the model's order
    /// (the IOMMU first, then disks, RNGs, the console). Empty when the
    /// machine breaks a rule so badly that its firmware cannot be built
    /// (the findings say which).
    pub devices: Vec<Row>,
    /// Every finding of the configuration checks (`dmavm explain CODE`),
    /// errors first: what `run` would refuse or warn about.
    pub findings: Vec<FindingRow>,
}

/// One finding of the configuration checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRow {
    /// Its stable code, `DMA001`...
    pub code: String,
    /// `error` (`run` refuses the machine) or `warning`.
    pub severity: String,
    /// The line `run` prints after `[CODE] `.
    pub message: String,
}

impl From<&Finding> for FindingRow {
    fn from(f: &Finding) -> Self {
        Self { code: f.code.to_string(), severity: f.severity.to_string(), message: f.message.clone() }
    }
}

/// One device (or host bridge) and what declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Its name (`id=`).
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// `mmio` or `pci`.
    pub transport: TransportName,
    /// Where it sits in this architecture's address map.
    pub address: Address,
    /// How it interrupts.
    pub interrupt: Interrupt,
    /// Declared DMA coherency (a PCI device's is its bridge's).
    pub coherent: bool,
    /// Whether it bypasses the IOMMU (a bridge: its devices' default).
    pub direct_ram_access: bool,
    /// Whether the IOMMU translates its DMA (a bridge: whether any
    /// requester ID of its segment is in the IOMMU's scope).
    pub in_iommu_scope: bool,
    /// Its endpoint ID when in scope.
    pub endpoint: Option<u32>,
    /// Whether it offers `VIRTIO_F_ACCESS_PLATFORM`; `None` for a host
    /// bridge, which is not a virtio device.
    pub access_platform: Option<bool>,
    /// The virtio-iommu's `bypass` state at reset (`--iommu
    /// boot-bypass=`); `None` for every other row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_bypass: Option<bool>,
    /// What the ACPI tables declare (x86_64).
    pub acpi: Option<AcpiObject>,
    /// What the device tree declares (aarch64).
    pub dt: Option<DtNode>,
}

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A PCI host bridge and its segment.
    PciHostBridge,
    /// The virtio-iommu.
    VirtioIommu,
    /// virtio-blk.
    VirtioBlk,
    /// virtio-rng.
    VirtioRng,
    /// virtio-console.
    VirtioConsole,
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// virtio-mmio.
    Mmio,
    /// PCI.
    Pci,
}

/// Where a row sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    /// A PCI function (a host bridge: its own function, 00:00.0).
    Pci {
        /// Segment.
        segment: u16,
        /// Bus.
        bus: u8,
        /// Device.
        device: u8,
        /// Function.
        function: u8,
    },
    /// A virtio-mmio register window.
    Mmio {
        /// Its base.
        base: u64,
    },
}

/// How a row interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interrupt {
    /// An IOAPIC input, edge triggered (x86 virtio-mmio).
    Gsi(u32),
    /// A GIC SPI (INTID - 32), edge triggered (aarch64 virtio-mmio).
    Spi(u32),
    /// MSI-X (virtio-pci).
    MsiX,
    /// None of its own (a host bridge).
    None,
}

/// The ACPI objects that declare a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcpiObject {
    /// The DSDT device whose `_CCA` applies: the device's own for
    /// virtio-mmio, its host bridge's root for PCI.
    pub path: String,
    /// That device's `_CCA`.
    pub cca: u8,
    /// The VIOT node that names it; `None`: outside the VIOT.
    pub viot: Option<ViotNode>,
    /// The DMAR entry that names it (a machine with VT-d units); `None`:
    /// outside every DRHD's scope, or no DMAR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmar: Option<DmarEntry>,
}

/// Where the DMAR names a row; DRHDs are numbered from 0 in table order,
/// device scopes from 0 within their DRHD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DmarEntry {
    /// The PCI-endpoint device scope `scope` of DRHD `drhd`.
    Scope {
        /// The DRHD.
        drhd: usize,
        /// The device scope within it.
        scope: usize,
    },
    /// DRHD `drhd`, which covers the whole segment (`INCLUDE_PCI_ALL`).
    IncludePciAll {
        /// The DRHD.
        drhd: usize,
    },
    /// A bridge: the DRHD of its segment, with explicit scopes.
    Drhd {
        /// The DRHD.
        drhd: usize,
    },
}

/// A VIOT node; PCI ranges and MMIO endpoints are numbered from 0 in table
/// order, each kind on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViotNode {
    /// The virtio-iommu-pci node (type 3).
    VirtioIommuPci,
    /// The virtio-iommu-mmio node (type 4).
    VirtioIommuMmio,
    /// The PCI range node (type 1) that covers the function.
    PciRange(usize),
    /// The MMIO endpoint node (type 2) of the window.
    MmioEndpoint(usize),
    /// A bridge: the PCI range nodes of its segment.
    PciRanges(Vec<usize>),
}

/// The device tree node that declares a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtNode {
    /// The node: the device's own for virtio-mmio and the IOMMU, the host
    /// bridge's for other PCI functions (they have no node; Linux looks
    /// for `dma-coherent` up the tree and maps their requester IDs through
    /// the bridge's `iommu-map`).
    pub path: String,
    /// Whether `dma-coherent` applies (on the node, or on the bridge).
    pub dma_coherent: bool,
    /// The endpoint ID of `iommus = <&viommu ID>` on the node.
    pub iommus: Option<u32>,
    /// `iommu-map` entries: a bridge's all, a PCI function's the one that
    /// covers its requester ID.
    pub iommu_map: Vec<IommuMapEntry>,
}

/// One `iommu-map` entry, `<rid-base &viommu iommu-base length>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuMapEntry {
    /// First requester ID.
    pub rid_base: u16,
    /// Endpoint ID of `rid_base`.
    pub endpoint_base: u32,
    /// Number of requester IDs.
    pub length: u32,
}

/// The firmware description the tables of one architecture are built from.
#[derive(Debug, Clone, Copy)]
pub enum Firmware<'a> {
    /// x86_64: what `dmavm_acpi::build` encodes (x86_64 builds only, see
    /// `super::describe`).
    Acpi(&'a Platform),
    /// aarch64: what `dmavm_fdt::build` encodes.
    Dt(&'a dmavm_fdt::Machine),
}

impl fmt::Display for Address {
    /// `0000:00:02.0` or `0xd0000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Address::Pci { segment, bus, device, function } => {
                write!(f, "{segment:04x}:{bus:02x}:{device:02x}.{function:x}")
            }
            Address::Mmio { base } => write!(f, "{base:#x}"),
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupt::Gsi(n) => write!(f, "GSI {n}"),
            Interrupt::Spi(n) => write!(f, "SPI {n}"),
            Interrupt::MsiX => f.write_str("MSI-X"),
            Interrupt::None => f.write_str("-"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::PciHostBridge => "pci-host-bridge",
            Kind::VirtioIommu => "virtio-iommu",
            Kind::VirtioBlk => "virtio-blk",
            Kind::VirtioRng => "virtio-rng",
            Kind::VirtioConsole => "virtio-console",
        })
    }
}

impl fmt::Display for TransportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportName::Mmio => "mmio",
            TransportName::Pci => "pci",
        })
    }
}

impl fmt::Display for ViotNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViotNode::VirtioIommuPci => f.write_str("virtio-iommu-pci node"),
            ViotNode::VirtioIommuMmio => f.write_str("virtio-iommu-mmio node"),
            ViotNode::PciRange(n) => write!(f, "PCI range {n}"),
            ViotNode::MmioEndpoint(n) => write!(f, "MMIO endpoint {n}"),
            ViotNode::PciRanges(list) => {
                let list: Vec<String> = list.iter().map(usize::to_string).collect();
                write!(f, "PCI range{} {}", if list.len() == 1 { "" } else { "s" }, list.join(", "))
            }
        }
    }
}

impl fmt::Display for DmarEntry {
    /// `DRHD 0 scope 1`, `DRHD 1 INCLUDE_PCI_ALL`, `DRHD 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmarEntry::Scope { drhd, scope } => write!(f, "DRHD {drhd} scope {scope}"),
            DmarEntry::IncludePciAll { drhd } => write!(f, "DRHD {drhd} INCLUDE_PCI_ALL"),
            DmarEntry::Drhd { drhd } => write!(f, "DRHD {drhd}"),
        }
    }
}

impl fmt::Display for IommuMapEntry {
    /// As DTS writes it: `<0x10 &viommu 0x10 0x8>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{:#x} &viommu {:#x} {:#x}>", self.rid_base, self.endpoint_base, self.length)
    }
}

fn kind(k: &DeviceKind) -> Kind {
    match k {
        DeviceKind::Disk { .. } => Kind::VirtioBlk,
        DeviceKind::Rng => Kind::VirtioRng,
        DeviceKind::Console => Kind::VirtioConsole,
        DeviceKind::Iommu => Kind::VirtioIommu,
    }
}

fn pci_address(segment: u16, bdf: u16) -> Address {
    // A BDF is bus (8 bits), device (5), function (3): each part fits.
    Address::Pci {
        segment,
        bus: (bdf >> 8) as u8,
        device: ((bdf >> 3) & 0x1f) as u8,
        function: (bdf & 7) as u8,
    }
}

/// `\_SB.` + the four-character name the DSDT gives the `index`th object
/// with this prefix (upper-case hex digits filling the name).
fn acpi_path(prefix: &str, index: usize) -> String {
    let digits = 4 - prefix.len();
    format!("\\_SB.{prefix}{index:0digits$X}")
}

/// The path of a host bridge's node: `pcie@` and the address of its first
/// bus's configuration space, the start of its `reg`
/// (pci/host-generic-pci.yaml; fdt/src/encode.rs).
fn pcie_path(root: &PciRoot) -> String {
    format!("/pcie@{:x}", root.ecam_base + (u64::from(root.bus_start) << 20))
}

fn iommu_map(root: &PciRoot) -> Vec<IommuMapEntry> {
    match &root.iommu {
        PciIommuScope::Bypass => Vec::new(),
        PciIommuScope::Ranges(list) => list
            .iter()
            .map(|r| IommuMapEntry {
                rid_base: r.rid_start,
                endpoint_base: r.endpoint_start,
                length: u32::from(r.rid_end - r.rid_start) + 1,
            })
            .collect(),
    }
}

/// The rows of `machine` whose firmware is `firmware`.
pub fn rows(machine: &Machine, firmware: Firmware<'_>) -> Vec<Row> {
    let mut rows: Vec<Row> = machine.bridges.iter().map(|b| bridge_row(b, firmware)).collect();
    rows.extend(machine.devices.iter().map(|d| device_row(machine, d, firmware)));
    rows
}

fn bridge_row(b: &PciBridge, firmware: Firmware<'_>) -> Row {
    let mut row = Row {
        id: b.id.clone(),
        kind: Kind::PciHostBridge,
        transport: TransportName::Pci,
        address: pci_address(b.segment, 0),
        interrupt: Interrupt::None,
        coherent: b.coherent,
        direct_ram_access: b.direct_ram_access,
        in_iommu_scope: false,
        endpoint: None,
        access_platform: None,
        boot_bypass: None,
        acpi: None,
        dt: None,
    };
    match firmware {
        Firmware::Acpi(p) => {
            let ranges: Vec<usize> = p
                .viot
                .iter()
                .flat_map(|v| v.pci_ranges.iter())
                .enumerate()
                .filter(|(_, r)| r.segment == b.segment)
                .map(|(i, _)| i)
                .collect();
            let dmar = bridge_dmar_entry(p, b.segment);
            row.in_iommu_scope = !ranges.is_empty() || dmar.is_some();
            let root = p.pci_roots.iter().position(|r| r.segment == b.segment);
            row.acpi = root.map(|i| AcpiObject {
                path: acpi_path("PCI", i),
                cca: u8::from(p.pci_roots[i].coherent),
                viot: (!ranges.is_empty()).then_some(ViotNode::PciRanges(ranges)),
                dmar,
            });
        }
        Firmware::Dt(m) => {
            if let Some(root) = m.pci_roots.iter().find(|r| r.segment == b.segment) {
                let map = iommu_map(root);
                row.in_iommu_scope = !map.is_empty();
                row.dt = Some(DtNode {
                    path: pcie_path(root),
                    dma_coherent: root.coherent,
                    iommus: None,
                    iommu_map: map,
                });
            }
        }
    }
    row
}

fn device_row(machine: &Machine, d: &Device, firmware: Firmware<'_>) -> Row {
    let is_iommu = d.kind == DeviceKind::Iommu;
    let (transport, address, interrupt) = match (d.placement, firmware) {
        (Placement::Pci { segment, slot }, _) => {
            (TransportName::Pci, pci_address(segment, pci_bdf(slot)), Interrupt::MsiX)
        }
        (Placement::Mmio { window }, firmware) => {
            let arch = match firmware {
                Firmware::Acpi(_) => Arch::X86_64,
                Firmware::Dt(_) => Arch::Aarch64,
            };
            match arch.virtio_mmio_window(window) {
                Some(w) => {
                    let interrupt = match arch {
                        Arch::X86_64 => Interrupt::Gsi(w.interrupt),
                        Arch::Aarch64 => Interrupt::Spi(w.interrupt),
                    };
                    (TransportName::Mmio, Address::Mmio { base: w.base }, interrupt)
                }
                None => (TransportName::Mmio, Address::Mmio { base: 0 }, Interrupt::None),
            }
        }
    };
    let mut row = Row {
        id: d.id.clone(),
        kind: kind(&d.kind),
        transport,
        address,
        interrupt,
        coherent: d.coherent,
        direct_ram_access: !d.dma.offers_access_platform(),
        in_iommu_scope: d.dma.endpoint().is_some(),
        endpoint: d.dma.endpoint(),
        access_platform: Some(d.dma.offers_access_platform()),
        boot_bypass: is_iommu.then_some(machine.boot_bypass),
        acpi: None,
        dt: None,
    };
    match firmware {
        Firmware::Acpi(p) => row.acpi = acpi_object(p, d, is_iommu),
        Firmware::Dt(m) => row.dt = dt_node(m, &row, d, is_iommu),
    }
    row
}

/// The DRHD of a host bridge's segment.
fn bridge_dmar_entry(p: &Platform, segment: u16) -> Option<DmarEntry> {
    let units = &p.dmar.as_ref()?.units;
    let drhd = units.iter().position(|u| u.segment == segment)?;
    Some(match units[drhd].scope {
        DmarScope::IncludePciAll => DmarEntry::IncludePciAll { drhd },
        DmarScope::Endpoints(_) => DmarEntry::Drhd { drhd },
    })
}

/// The DMAR entry that covers function `bdf` of `segment`.
fn function_dmar_entry(p: &Platform, segment: u16, bdf: u16) -> Option<DmarEntry> {
    let units = &p.dmar.as_ref()?.units;
    units.iter().enumerate().filter(|(_, u)| u.segment == segment).find_map(|(drhd, u)| match &u.scope {
        DmarScope::IncludePciAll => Some(DmarEntry::IncludePciAll { drhd }),
        DmarScope::Endpoints(list) => {
            list.iter().position(|&f| f == bdf).map(|scope| DmarEntry::Scope { drhd, scope })
        }
    })
}

fn acpi_object(p: &Platform, d: &Device, is_iommu: bool) -> Option<AcpiObject> {
    let viot = p.viot.as_ref();
    match d.placement {
        Placement::Mmio { window } => {
            let base = Arch::X86_64.virtio_mmio_window(window)?.base;
            let i = p.virtio_mmio.iter().position(|m| u64::from(m.base) == base)?;
            let node = if is_iommu {
                viot.filter(|v| v.iommu == ViotIommu::Mmio { base }).map(|_| ViotNode::VirtioIommuMmio)
            } else {
                viot.and_then(|v| v.mmio_endpoints.iter().position(|e| e.base == base))
                    .map(ViotNode::MmioEndpoint)
            };
            Some(AcpiObject {
                path: acpi_path("VR", i),
                cca: u8::from(p.virtio_mmio[i].coherent),
                viot: node,
                dmar: None,
            })
        }
        Placement::Pci { segment, slot } => {
            let i = p.pci_roots.iter().position(|r| r.segment == segment)?;
            let bdf = pci_bdf(slot);
            let node = if is_iommu {
                viot.filter(|v| v.iommu == ViotIommu::Pci { segment, bdf }).map(|_| ViotNode::VirtioIommuPci)
            } else {
                viot.and_then(|v| {
                    v.pci_ranges
                        .iter()
                        .position(|r| r.segment == segment && (r.bdf_start..=r.bdf_end).contains(&bdf))
                })
                .map(ViotNode::PciRange)
            };
            Some(AcpiObject {
                path: acpi_path("PCI", i),
                cca: u8::from(p.pci_roots[i].coherent),
                viot: node,
                dmar: function_dmar_entry(p, segment, bdf),
            })
        }
    }
}

fn dt_node(m: &dmavm_fdt::Machine, row: &Row, d: &Device, is_iommu: bool) -> Option<DtNode> {
    match d.placement {
        Placement::Mmio { .. } => {
            let Address::Mmio { base } = row.address else { return None };
            let node = m.virtio_mmio.iter().find(|v| v.region.base == base)?;
            let name = if is_iommu { "iommu" } else { "virtio" };
            Some(DtNode {
                path: format!("/{name}@{base:x}"),
                dma_coherent: node.coherent,
                iommus: node.iommu_endpoint,
                iommu_map: Vec::new(),
            })
        }
        Placement::Pci { segment, slot } => {
            let root = m.pci_roots.iter().find(|r| r.segment == segment)?;
            let bdf = pci_bdf(slot);
            let bridge = pcie_path(root);
            let (path, map) = if is_iommu {
                // virtio/pci-iommu.yaml: a child of its bridge, unit address
                // "device" for function 0 (fdt/src/encode.rs).
                (format!("{bridge}/iommu@{:x}", slot), Vec::new())
            } else {
                let covering = iommu_map(root)
                    .into_iter()
                    .filter(|e| {
                        u32::from(bdf) >= u32::from(e.rid_base)
                            && u32::from(bdf) < u32::from(e.rid_base) + e.length
                    })
                    .collect();
                (bridge, covering)
            };
            Some(DtNode { path, dma_coherent: root.coherent, iommus: None, iommu_map: map })
        }
    }
}
