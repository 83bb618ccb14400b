//! Test support: what a guest reads from the firmware bytes, decoded
//! independently of the encoders. The ACPI side walks the DSDT's AML
//! (`Device` objects in `\_SB_`: `_CCA`, `_SEG`, the first
//! `Memory32Fixed` of `_CRS`) and the VIOT's nodes; the device tree side
//! parses the blob with `dmavm_fdt::parse` and follows `dma-coherent`,
//! `iommus`, `iommu-map` and the IOMMU's phandle. Both come out as
//! [`Facts`], in terms that do not depend on the address map (a
//! virtio-mmio window by its position), so the two can be compared.

// The ACPI half has no user in an arm64 build (no x86 tables there).

use std::collections::BTreeMap;

/// What one virtio-mmio window declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioFact {
    /// `_CCA` 1 / `dma-coherent`.
    pub coherent: bool,
    /// The endpoint ID: VIOT MMIO endpoint node / `iommus`.
    pub endpoint: Option<u32>,
    /// Whether it is the virtio-iommu.
    pub is_iommu: bool,
}

/// What one PCI segment's host bridge declares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PciFact {
    /// `_CCA` 1 / `dma-coherent` on the root.
    pub coherent: bool,
    /// Translated requester IDs: `(first, last, endpoint of first)`, from
    /// the VIOT's PCI ranges / the `iommu-map`, in order.
    pub ranges: Vec<(u16, u16, u32)>,
}

impl PciFact {
    /// The endpoint ID of function `bdf`, if translated.
    pub fn endpoint(&self, bdf: u16) -> Option<u32> {
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&bdf))
            .map(|(first, _, ep)| ep + u32::from(bdf - first))
    }
}

/// Where the firmware says the IOMMU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuAt {
    /// A PCI function.
    Pci {
        /// Segment.
        segment: u16,
        /// Function.
        bdf: u16,
    },
    /// A virtio-mmio window, by position.
    Mmio {
        /// Window position.
        index: u32,
    },
}

/// Everything the DMA contract puts in the firmware.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// virtio-mmio windows by position.
    pub mmio: BTreeMap<u32, MmioFact>,
    /// Host bridges by segment.
    pub pci: BTreeMap<u16, PciFact>,
    /// The IOMMU.
    pub iommu: Option<IommuAt>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

/// A `Device` of the DSDT, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcpiDevice {
    /// Its four-character name.
    pub name: String,
    /// `_CCA`, if present.
    pub cca: Option<u64>,
    /// `_SEG`, if present.
    pub seg: Option<u64>,
    /// The base of the first `Memory32Fixed` of `_CRS`, if any.
    pub memory32: Option<u32>,
}

/// An AML PkgLength (ACPI 6.5, 20.2.4) at `at`: (length, bytes it took).
fn pkg_length(b: &[u8], at: usize) -> (usize, usize) {
    let lead = b[at];
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return (usize::from(lead & 0x3f), 1);
    }
    let mut len = usize::from(lead & 0x0f);
    for i in 0..follow {
        len |= usize::from(b[at + 1 + i]) << (4 + 8 * i);
    }
    (len, 1 + follow)
}

/// An AML integer (ZeroOp, OneOp, OnesOp, BytePrefix, WordPrefix,
/// DWordPrefix, QWordPrefix) at `at`.
fn integer(b: &[u8], at: usize) -> u64 {
    match b[at] {
        0x00 => 0,
        0x01 => 1,
        0xff => u64::MAX,
        0x0a => u64::from(b[at + 1]),
        0x0b => u64::from(le16(b, at + 1)),
        0x0c => u64::from(le32(b, at + 1)),
        0x0e => le64(b, at + 1),
        op => panic!("not an AML integer: {op:#x}"),
    }
}

/// `Name (seg, integer)` inside `body`.
fn named_integer(body: &[u8], seg: &[u8; 4]) -> Option<u64> {
    let mut pattern = vec![0x08];
    pattern.extend_from_slice(seg);
    let at = body.windows(5).position(|w| w == pattern.as_slice())?;
    Some(integer(body, at + 5))
}

/// Where the last NameSeg of the NameString at `at` is, and where the
/// string ends: a plain NameSeg, or a rooted (`\`) NameSeg, dual
/// (`0x2e`) or multi (`0x2f`) name path, such as `\_SB_.GED0`.
fn last_name_seg(b: &[u8], mut at: usize) -> (usize, usize) {
    while b[at] == b'\\' || b[at] == b'^' {
        at += 1;
    }
    let segs = match b[at] {
        0x2e => {
            at += 1;
            2
        }
        0x2f => {
            at += 2;
            usize::from(b[at - 1])
        }
        _ => 1,
    };
    let end = at + 4 * segs;
    (end - 4, end)
}

/// The devices of the DSDT's `\_SB_` scope, in order.
pub fn dsdt_devices(dsdt: &[u8]) -> Vec<AcpiDevice> {
    assert_eq!(&dsdt[..4], b"DSDT");
    let sb = dsdt.windows(5).position(|w| w == b"\\_SB_").expect("no \\_SB_ scope") + 5;
    let mut at = sb;
    let mut out = Vec::new();
    while at < dsdt.len() {
        // The hot-plug controller's slot scopes hold no device of the
        // machine's: skipped whole.
        if dsdt[at] == 0x10 {
            let (len, _) = pkg_length(dsdt, at + 1);
            at += 1 + len;
            continue;
        }
        assert_eq!(&dsdt[at..at + 2], &[0x5b, 0x82], "DeviceOp expected at {at:#x}");
        let (len, took) = pkg_length(dsdt, at + 2);
        let end = at + 2 + len;
        let (name_at, body_at) = last_name_seg(dsdt, at + 2 + took);
        let body = &dsdt[body_at..end];
        // Memory32Fixed: tag 0x86, length 9, read/write flag, base, length.
        let memory32 = body.windows(3).position(|w| w == [0x86, 0x09, 0x00]).map(|p| le32(body, p + 4));
        out.push(AcpiDevice {
            name: String::from_utf8_lossy(&dsdt[name_at..name_at + 4]).into_owned(),
            cca: named_integer(body, b"_CCA"),
            seg: named_integer(body, b"_SEG"),
            memory32,
        });
        at = end;
    }
    out
}

/// A VIOT node, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViotNode {
    /// Type 1: `(segment, bdf_start, bdf_end, endpoint_start)`.
    PciRange(u16, u16, u16, u32),
    /// Type 2: `(base, endpoint)`.
    MmioEndpoint(u64, u32),
    /// Type 3: `(segment, bdf)`.
    IommuPci(u16, u16),
    /// Type 4: base.
    IommuMmio(u64),
}

/// The VIOT's nodes in table order (virtio-iommu spec, VIOT; acpi/src/viot.rs).
pub fn viot_nodes(viot: &[u8]) -> Vec<ViotNode> {
    assert_eq!(&viot[..4], b"VIOT");
    let count = le16(viot, 36);
    let mut at = usize::from(le16(viot, 38));
    let mut out = Vec::new();
    for _ in 0..count {
        let len = usize::from(le16(viot, at + 2));
        let node = match viot[at] {
            1 => {
                let (seg_start, seg_end) = (le16(viot, at + 8), le16(viot, at + 10));
                assert_eq!(seg_start, seg_end, "dmavm's ranges span one segment");
                ViotNode::PciRange(seg_start, le16(viot, at + 12), le16(viot, at + 14), le32(viot, at + 4))
            }
            2 => ViotNode::MmioEndpoint(le64(viot, at + 8), le32(viot, at + 4)),
            3 => ViotNode::IommuPci(le16(viot, at + 4), le16(viot, at + 6)),
            4 => ViotNode::IommuMmio(le64(viot, at + 8)),
            t => panic!("VIOT node type {t}"),
        };
        out.push(node);
        at += len;
    }
    out
}

/// A DRHD of a DMAR, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drhd {
    /// Its PCI segment.
    pub segment: u16,
    /// Its register base.
    pub register_base: u64,
    /// `INCLUDE_PCI_ALL`.
    pub include_all: bool,
    /// Its PCI-endpoint device scopes' functions, `bus << 8 | device << 3 |
    /// function`, in table order.
    pub functions: Vec<u16>,
}

/// The DMAR's host address width field and DRHDs in table order (VT-d 4.1
/// chapter 8; acpi/src/dmar.rs). Panics on any other structure or scope
/// type, which dmavm never writes.
pub fn dmar_units(dmar: &[u8]) -> (u8, Vec<Drhd>) {
    assert_eq!(&dmar[..4], b"DMAR");
    assert_eq!(le32(dmar, 4) as usize, dmar.len());
    assert_eq!(dmar[37], 0, "no DMAR flag: no interrupt remapping");
    let mut at = 48;
    let mut units = Vec::new();
    while at < dmar.len() {
        assert_eq!(le16(dmar, at), 0, "only DRHDs");
        let end = at + usize::from(le16(dmar, at + 2));
        let mut unit = Drhd {
            segment: le16(dmar, at + 6),
            register_base: le64(dmar, at + 8),
            include_all: dmar[at + 4] & 1 == 1,
            functions: Vec::new(),
        };
        let mut scope = at + 16;
        while scope < end {
            assert_eq!(dmar[scope], 1, "only PCI-endpoint scopes");
            assert_eq!(dmar[scope + 1], 8, "one path entry");
            let bus = u16::from(dmar[scope + 5]);
            unit.functions.push(bus << 8 | u16::from(dmar[scope + 6]) << 3 | u16::from(dmar[scope + 7]));
            scope += 8;
        }
        assert_eq!(scope, end, "scopes fill the DRHD");
        units.push(unit);
        at = end;
    }
    (dmar[36], units)
}

/// What the x86_64 tables declare.
pub fn acpi_facts(tables: &dmavm_acpi::AcpiTables) -> Facts {
    let index = |base: u64| crate::Arch::X86_64.virtio_mmio_index(base).expect("a virtio-mmio window");
    let dsdt = &tables.find(*b"DSDT").expect("a DSDT").bytes;
    let viot = tables.find(*b"VIOT").map(|v| viot_nodes(&v.bytes)).unwrap_or_default();
    let mut facts = Facts::default();
    for d in dsdt_devices(dsdt) {
        if d.name.starts_with("VR") {
            let base = u64::from(d.memory32.expect("a window"));
            let endpoint = viot.iter().find_map(|n| match n {
                ViotNode::MmioEndpoint(b, ep) if *b == base => Some(*ep),
                _ => None,
            });
            let is_iommu = viot.contains(&ViotNode::IommuMmio(base));
            facts.mmio.insert(index(base), MmioFact { coherent: d.cca == Some(1), endpoint, is_iommu });
        } else if let Some(seg) = d.seg {
            let segment = u16::try_from(seg).expect("a segment");
            let ranges = viot
                .iter()
                .filter_map(|n| match *n {
                    ViotNode::PciRange(s, first, last, ep) if s == segment => Some((first, last, ep)),
                    _ => None,
                })
                .collect();
            facts.pci.insert(segment, PciFact { coherent: d.cca == Some(1), ranges });
        }
    }
    facts.iommu = viot.iter().find_map(|n| match *n {
        ViotNode::IommuPci(segment, bdf) => Some(IommuAt::Pci { segment, bdf }),
        ViotNode::IommuMmio(base) => Some(IommuAt::Mmio { index: index(base) }),
        _ => None,
    });
    facts
}

/// The window position of an aarch64 virtio-mmio base.
fn dt_mmio_index(base: u64) -> u32 {
    crate::Arch::Aarch64.virtio_mmio_index(base).expect("a window")
}

/// What the device tree blob declares.
pub fn dt_facts(blob: &[u8]) -> Facts {
    let tree = dmavm_fdt::parse(blob).expect("a valid blob");
    let root = &tree.root;
    let iommu_phandle =
        root.walk().into_iter().find(|(_, n)| n.has("#iommu-cells")).and_then(|(_, n)| n.u32("phandle"));
    let mut facts = Facts::default();
    for node in &root.children {
        let compatible = node.strings("compatible").unwrap_or_default();
        if compatible.contains(&"virtio,mmio") {
            let reg = node.u32s("reg").expect("reg");
            let base = u64::from(reg[0]) << 32 | u64::from(reg[1]);
            let endpoint = node.u32s("iommus").map(|cells| {
                assert_eq!(cells.len(), 2, "iommus = <&viommu ID>");
                assert_eq!(Some(cells[0]), iommu_phandle, "iommus names the IOMMU");
                cells[1]
            });
            let is_iommu = node.has("#iommu-cells");
            if is_iommu {
                facts.iommu = Some(IommuAt::Mmio { index: dt_mmio_index(base) });
            }
            facts.mmio.insert(
                dt_mmio_index(base),
                MmioFact { coherent: node.has("dma-coherent"), endpoint, is_iommu },
            );
        } else if compatible.contains(&"pci-host-ecam-generic") {
            let segment = u16::try_from(node.u32("linux,pci-domain").expect("a domain")).expect("a segment");
            let ranges = node
                .u32s("iommu-map")
                .unwrap_or_default()
                .chunks(4)
                .map(|e| {
                    assert_eq!(Some(e[1]), iommu_phandle, "iommu-map names the IOMMU");
                    let first = u16::try_from(e[0]).expect("a RID");
                    let last = u16::try_from(e[0] + e[3] - 1).expect("a RID");
                    (first, last, e[2])
                })
                .collect();
            for child in node.children.iter().filter(|c| c.has("#iommu-cells")) {
                let bdf = u16::try_from(child.u32s("reg").expect("reg")[0] >> 8).expect("a BDF");
                facts.iommu = Some(IommuAt::Pci { segment, bdf });
            }
            facts.pci.insert(segment, PciFact { coherent: node.has("dma-coherent"), ranges });
        }
    }
    facts
}
