//! Virtual I/O Translation table (VIOT; ACPI 6.5 section 5.2.32 points to the virtio-iommu
//! specification of it): which endpoints the virtio-iommu translates.
//!
//! Layout (all little endian):
//!
//! ```text
//! 0   header (36 bytes), revision 0
//! 36  u16 node count, u16 node offset (48), 8 reserved bytes
//! 48  the IOMMU node, 16 bytes:
//!       type 3, virtio-iommu-pci:  u8 type, u8 0, u16 length, u16 segment, u16 bdf, 8 reserved
//!       type 4, virtio-iommu-mmio: u8 type, u8 0, u16 length, 4 reserved, u64 base address
//! 64  one node per PCI range, 24 bytes each (type 1):
//!       u8 type, u8 0, u16 length, u32 endpoint start, u16 segment start, u16 segment end,
//!       u16 bdf start, u16 bdf end, u16 output node, 6 reserved
//! ..  one node per MMIO endpoint, 24 bytes each (type 2):
//!       u8 type, u8 0, u16 length, u32 endpoint ID, u64 base address, u16 output node, 6 reserved
//! ```
//!
//! The output node of every endpoint node is the table offset of the IOMMU node, 48. Node
//! lengths are multiples of 8, so every node, and every 64-bit field, is 8-byte aligned in the
//! table. Each PCI range spans one segment (segment start = end), so Linux's endpoint ID for
//! function `bdf` (`drivers/acpi/viot.c`: `((segment - segment_start) << 16) + bdf - bdf_start +
//! endpoint_start`) is `endpoint_start + (bdf - bdf_start)`.
//!
//! Encoded here on the generic SDT rather than with `acpi_tables`' `viot` module: its PCI range
//! node always writes the first BDF as the endpoint start (no other endpoint start can be given),
//! it writes revision 1 where the specification, QEMU and ACPICA's template have 0, its running
//! checksum adds 1 per node for the 16-bit node count, which goes wrong past 255 nodes, and its
//! `PciDevice::new` panics on a device or function out of range.

use std::collections::HashSet;

use crate::description::{Platform, Viot, ViotIommu, ViotMmioEndpoint, ViotPciRange};
use crate::error::Error;
use crate::identity::{new_table, HEADER_LEN};

/// VIOT revision of the specification.
const REVISION: u8 = 0;
/// Length of the fixed part: header, node count, node offset, 8 reserved bytes.
const FIXED_LEN: usize = HEADER_LEN + 12;
/// Table offset of the first node, which is always the IOMMU: the output node of every other.
const IOMMU_NODE_OFFSET: u16 = FIXED_LEN as u16;

/// Node types.
const TYPE_PCI_RANGE: u8 = 1;
const TYPE_MMIO_ENDPOINT: u8 = 2;
const TYPE_VIRTIO_IOMMU_PCI: u8 = 3;
const TYPE_VIRTIO_IOMMU_MMIO: u8 = 4;
/// Node lengths.
const IOMMU_NODE_LEN: u16 = 16;
const ENDPOINT_NODE_LEN: u16 = 24;

/// A node: type, reserved byte, length, then `body` (which makes up the rest of `len`).
fn node(node_type: u8, len: u16, body: &[&[u8]]) -> Vec<u8> {
    let mut n = vec![node_type, 0];
    n.extend_from_slice(&len.to_le_bytes());
    for field in body {
        n.extend_from_slice(field);
    }
    n.resize(usize::from(len), 0);
    n
}

fn iommu_node(iommu: &ViotIommu) -> Vec<u8> {
    match *iommu {
        ViotIommu::Pci { segment, bdf } => {
            node(TYPE_VIRTIO_IOMMU_PCI, IOMMU_NODE_LEN, &[&segment.to_le_bytes(), &bdf.to_le_bytes()])
        }
        ViotIommu::Mmio { base } => {
            node(TYPE_VIRTIO_IOMMU_MMIO, IOMMU_NODE_LEN, &[&[0; 4], &base.to_le_bytes()])
        }
    }
}

fn pci_range_node(r: &ViotPciRange) -> Vec<u8> {
    node(
        TYPE_PCI_RANGE,
        ENDPOINT_NODE_LEN,
        &[
            &r.endpoint_start.to_le_bytes(),
            &r.segment.to_le_bytes(), // segment start
            &r.segment.to_le_bytes(), // segment end
            &r.bdf_start.to_le_bytes(),
            &r.bdf_end.to_le_bytes(),
            &IOMMU_NODE_OFFSET.to_le_bytes(),
        ],
    )
}

fn mmio_endpoint_node(e: &ViotMmioEndpoint) -> Vec<u8> {
    node(
        TYPE_MMIO_ENDPOINT,
        ENDPOINT_NODE_LEN,
        &[&e.endpoint.to_le_bytes(), &e.base.to_le_bytes(), &IOMMU_NODE_OFFSET.to_le_bytes()],
    )
}

/// Whether some host bridge of `platform` decodes the buses of `bdf_start..=bdf_end` on `segment`.
fn on_root(platform: &Platform, segment: u16, bdf_start: u16, bdf_end: u16) -> Result<(), Error> {
    let (first_bus, last_bus) = (bdf_start >> 8, bdf_end >> 8);
    let decoded = platform.pci_roots.iter().any(|root| {
        root.segment == segment
            && first_bus >= u16::from(root.bus_start)
            && last_bus <= u16::from(root.bus_end)
    });
    if decoded {
        Ok(())
    } else {
        Err(Error::ViotPciNotOnRoot { segment, bdf_start, bdf_end })
    }
}

/// Whether `base` is the base of a virtio-mmio device of `platform`.
fn is_mmio_device(platform: &Platform, base: u64) -> Result<(), Error> {
    if platform.virtio_mmio.iter().any(|d| u64::from(d.base) == base) {
        Ok(())
    } else {
        Err(Error::ViotMmioNotDevice(base))
    }
}

/// Checks everything the VIOT promises about `viot` (see [`Viot`]) against `platform`.
fn check(viot: &Viot, platform: &Platform) -> Result<(), Error> {
    let in_own_scope = || Error::ViotIommuInOwnScope { iommu: viot.iommu };
    match viot.iommu {
        ViotIommu::Pci { segment, bdf } => on_root(platform, segment, bdf, bdf)?,
        ViotIommu::Mmio { base } => is_mmio_device(platform, base)?,
    }

    // Endpoint IDs of every node, first and last, to find any shared one.
    let mut endpoint_ids: Vec<(u64, u64)> = Vec::new();

    for r in &viot.pci_ranges {
        if r.bdf_start > r.bdf_end {
            return Err(Error::ViotEmptyPciRange {
                segment: r.segment,
                bdf_start: r.bdf_start,
                bdf_end: r.bdf_end,
            });
        }
        on_root(platform, r.segment, r.bdf_start, r.bdf_end)?;
        if let ViotIommu::Pci { segment, bdf } = viot.iommu {
            if segment == r.segment && (r.bdf_start..=r.bdf_end).contains(&bdf) {
                return Err(in_own_scope());
            }
        }
        let first = u64::from(r.endpoint_start);
        let last = first + u64::from(r.bdf_end - r.bdf_start);
        if last > u64::from(u32::MAX) {
            return Err(Error::ViotEndpointIdOverflow {
                segment: r.segment,
                bdf_start: r.bdf_start,
                bdf_end: r.bdf_end,
                endpoint_start: r.endpoint_start,
            });
        }
        endpoint_ids.push((first, last));
    }

    let mut ranges: Vec<&ViotPciRange> = viot.pci_ranges.iter().collect();
    ranges.sort_by_key(|r| (r.segment, r.bdf_start));
    for pair in ranges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.segment == b.segment && b.bdf_start <= a.bdf_end {
            return Err(Error::ViotPciRangesOverlap {
                segment: a.segment,
                first: (a.bdf_start, a.bdf_end),
                second: (b.bdf_start, b.bdf_end),
            });
        }
    }

    let mut bases = HashSet::new();
    for e in &viot.mmio_endpoints {
        is_mmio_device(platform, e.base)?;
        if viot.iommu == (ViotIommu::Mmio { base: e.base }) {
            return Err(in_own_scope());
        }
        if !bases.insert(e.base) {
            return Err(Error::ViotDuplicateMmioEndpoint(e.base));
        }
        endpoint_ids.push((u64::from(e.endpoint), u64::from(e.endpoint)));
    }

    endpoint_ids.sort_unstable();
    let mut last_so_far = None;
    for (first, last) in endpoint_ids {
        if last_so_far.is_some_and(|l| first <= l) {
            // All IDs come from u32 values or were checked to fit.
            return Err(Error::ViotEndpointIdReused(u32::try_from(first).unwrap_or(u32::MAX)));
        }
        last_so_far = Some(last_so_far.map_or(last, |l: u64| l.max(last)));
    }
    Ok(())
}

/// The VIOT of `platform`, or `None` if it has no IOMMU.
pub(crate) fn encode(platform: &Platform) -> Result<Option<Vec<u8>>, Error> {
    let Some(viot) = &platform.viot else {
        return Ok(None);
    };
    check(viot, platform)?;
    let count = 1 + viot.pci_ranges.len() + viot.mmio_endpoints.len();
    let node_count = u16::try_from(count).map_err(|_| Error::TooManyViotNodes(count))?;

    let mut fixed = Vec::with_capacity(FIXED_LEN - HEADER_LEN);
    fixed.extend_from_slice(&node_count.to_le_bytes());
    fixed.extend_from_slice(&IOMMU_NODE_OFFSET.to_le_bytes());
    fixed.extend_from_slice(&[0; 8]);

    let mut table = new_table(*b"VIOT", REVISION);
    table.append_slice(&fixed);
    table.append_slice(&iommu_node(&viot.iommu));
    for r in &viot.pci_ranges {
        table.append_slice(&pci_range_node(r));
    }
    for e in &viot.mmio_endpoints {
        table.append_slice(&mmio_endpoint_node(e));
    }
    Ok(Some(table.as_slice().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{PciRoot, VirtioMmioDevice};
    use crate::test_utils::{byte_sum, le_u16, le_u32, sample_pci_root, sample_platform};

    const IOMMU_BDF: u16 = 4 << 3; // 00:04.0

    fn mmio_device(base: u32) -> VirtioMmioDevice {
        VirtioMmioDevice { base, size: 0x200, gsi: 5, coherent: true }
    }

    /// A virtio-iommu-pci at 00:04.0 translating 00:01.0-00:02.0 (endpoints 8-16) and 00:05.0
    /// (endpoint 0x28), and the virtio-mmio device at 0xd000_0000 (endpoint 0x10000), with
    /// 00:03.0 and the virtio-mmio device at 0xd000_1000 bypassing it.
    fn platform_with_pci_iommu() -> Platform {
        let mut p = sample_platform();
        p.pci_roots = vec![sample_pci_root()];
        p.virtio_mmio = vec![mmio_device(0xd000_0000), mmio_device(0xd000_1000)];
        p.viot = Some(Viot {
            iommu: ViotIommu::Pci { segment: 0, bdf: IOMMU_BDF },
            pci_ranges: vec![
                ViotPciRange { segment: 0, bdf_start: 0x08, bdf_end: 0x10, endpoint_start: 0x08 },
                ViotPciRange { segment: 0, bdf_start: 0x28, bdf_end: 0x28, endpoint_start: 0x28 },
            ],
            mmio_endpoints: vec![ViotMmioEndpoint { base: 0xd000_0000, endpoint: 0x1_0000 }],
        });
        p
    }

    fn viot_mut(p: &mut Platform) -> &mut Viot {
        p.viot.as_mut().unwrap()
    }

    #[test]
    fn no_iommu_no_table() {
        assert_eq!(encode(&sample_platform()).unwrap(), None);
    }

    #[test]
    fn pci_iommu_bytes() {
        let b = encode(&platform_with_pci_iommu()).unwrap().unwrap();
        assert_eq!(b.len(), 48 + 16 + 2 * 24 + 24);
        assert_eq!(&b[0..4], b"VIOT");
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(b[8], 0, "revision");
        assert_eq!(&b[10..16], b"DMAVM ");
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(
            b[36..48],
            [
                0x04, 0x00, // node count: IOMMU, two PCI ranges, one MMIO endpoint
                0x30, 0x00, // node offset 48
                0, 0, 0, 0, 0, 0, 0, 0, // reserved
            ]
        );
        assert_eq!(
            b[48..64],
            [
                0x03, 0x00, 0x10, 0x00, // virtio-iommu-pci, length 16
                0x00, 0x00, // segment 0
                0x20, 0x00, // BDF 00:04.0
                0, 0, 0, 0, 0, 0, 0, 0, // reserved
            ]
        );
        assert_eq!(
            b[64..88],
            [
                0x01, 0x00, 0x18, 0x00, // PCI range, length 24
                0x08, 0x00, 0x00, 0x00, // endpoint start 8
                0x00, 0x00, 0x00, 0x00, // segments 0..=0
                0x08, 0x00, 0x10, 0x00, // BDFs 00:01.0..=00:02.0
                0x30, 0x00, // output node: the IOMMU at 48
                0, 0, 0, 0, 0, 0, // reserved
            ]
        );
        assert_eq!(
            b[88..112],
            [
                0x01, 0x00, 0x18, 0x00, // PCI range, length 24
                0x28, 0x00, 0x00, 0x00, // endpoint start 0x28
                0x00, 0x00, 0x00, 0x00, // segments 0..=0
                0x28, 0x00, 0x28, 0x00, // BDFs 00:05.0..=00:05.0
                0x30, 0x00, // output node
                0, 0, 0, 0, 0, 0,
            ]
        );
        assert_eq!(
            b[112..136],
            [
                0x02, 0x00, 0x18, 0x00, // MMIO endpoint, length 24
                0x00, 0x00, 0x01, 0x00, // endpoint 0x10000
                0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, // base 0xd000_0000
                0x30, 0x00, // output node
                0, 0, 0, 0, 0, 0,
            ]
        );
    }

    #[test]
    fn mmio_iommu_bytes() {
        let mut p = platform_with_pci_iommu();
        p.pci_roots.clear();
        p.virtio_mmio.push(mmio_device(0xd000_2000));
        p.viot = Some(Viot {
            iommu: ViotIommu::Mmio { base: 0xd000_2000 },
            pci_ranges: Vec::new(),
            mmio_endpoints: vec![
                ViotMmioEndpoint { base: 0xd000_1000, endpoint: 7 },
                ViotMmioEndpoint { base: 0xd000_0000, endpoint: 3 },
            ],
        });
        let b = encode(&p).unwrap().unwrap();
        assert_eq!(b.len(), 48 + 16 + 2 * 24);
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(le_u16(&b, 36), 3, "node count");
        assert_eq!(
            b[48..64],
            [
                0x04, 0x00, 0x10, 0x00, // virtio-iommu-mmio, length 16
                0, 0, 0, 0, // reserved
                0x00, 0x20, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, // base 0xd000_2000
            ]
        );
        // In the order given, both pointing at the IOMMU.
        assert_eq!(
            b[64..88],
            [
                0x02, 0x00, 0x18, 0x00, 0x07, 0x00, 0x00, 0x00, // MMIO endpoint 7
                0x00, 0x10, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, // at 0xd000_1000
                0x30, 0x00, 0, 0, 0, 0, 0, 0,
            ]
        );
        assert_eq!(b[88..92], [0x02, 0x00, 0x18, 0x00]);
        assert_eq!(le_u32(&b, 92), 3);
        assert_eq!(le_u16(&b, 104), 48, "output node");
    }

    #[test]
    fn nodes_aligned_and_chained() {
        let b = encode(&platform_with_pci_iommu()).unwrap().unwrap();
        let mut at = usize::from(le_u16(&b, 38));
        let mut types = Vec::new();
        for _ in 0..le_u16(&b, 36) {
            assert_eq!(at % 8, 0, "node at {at} 8-byte aligned");
            types.push(b[at]);
            if b[at] == TYPE_PCI_RANGE || b[at] == TYPE_MMIO_ENDPOINT {
                let output = usize::from(le_u16(&b, at + 16));
                assert!(matches!(b[output], TYPE_VIRTIO_IOMMU_PCI | TYPE_VIRTIO_IOMMU_MMIO));
            }
            at += usize::from(le_u16(&b, at + 2));
        }
        assert_eq!(at, b.len(), "nodes end at the table end");
        assert_eq!(types, [3, 1, 1, 2]);
    }

    #[test]
    fn empty_scope_is_just_the_iommu() {
        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges.clear();
        viot_mut(&mut p).mmio_endpoints.clear();
        let b = encode(&p).unwrap().unwrap();
        assert_eq!(b.len(), 64);
        assert_eq!(le_u16(&b, 36), 1);
        assert_eq!(byte_sum(&b), 0);
    }

    #[test]
    fn iommu_never_in_its_own_scope() {
        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges[0].bdf_end = IOMMU_BDF;
        let err = encode(&p).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ViotIommuInOwnScope { iommu: ViotIommu::Pci { segment: 0, bdf: IOMMU_BDF } }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the virtio-iommu (PCI 0000:00:04.0) is in its own VIOT scope: the IOMMU is never in its own \
             scope"
        );
        // The same function on another segment is another function.
        let mut p = platform_with_pci_iommu();
        p.pci_roots.push(PciRoot { segment: 1, ecam_base: 0xa000_0000, ..sample_pci_root() });
        viot_mut(&mut p).pci_ranges[0].segment = 1;
        viot_mut(&mut p).pci_ranges[0].bdf_end = 0xff;
        viot_mut(&mut p).pci_ranges[0].endpoint_start = 0x1_0008;
        assert!(encode(&p).is_ok());

        let mut p = platform_with_pci_iommu();
        p.virtio_mmio.push(mmio_device(0xd000_2000));
        let viot = viot_mut(&mut p);
        viot.iommu = ViotIommu::Mmio { base: 0xd000_2000 };
        viot.mmio_endpoints.push(ViotMmioEndpoint { base: 0xd000_2000, endpoint: 0x1_0001 });
        let err = encode(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the virtio-iommu (MMIO 0xd0002000) is in its own VIOT scope: the IOMMU is never in its own scope"
        );
    }

    #[test]
    fn ranges_must_be_non_empty_and_disjoint() {
        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges[1].bdf_end = 0x27;
        let err = encode(&p).unwrap_err();
        assert!(matches!(err, Error::ViotEmptyPciRange { segment: 0, bdf_start: 0x28, bdf_end: 0x27 }));
        assert_eq!(err.to_string(), "VIOT PCI range 0000:00:05.0..=0000:00:04.7 is empty");

        // Listed out of order, overlapping by one function.
        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges[1] =
            ViotPciRange { segment: 0, bdf_start: 0x00, bdf_end: 0x08, endpoint_start: 0x100 };
        let err = encode(&p).unwrap_err();
        assert!(matches!(
            err,
            Error::ViotPciRangesOverlap { segment: 0, first: (0x00, 0x08), second: (0x08, 0x10) }
        ));
        assert_eq!(
            err.to_string(),
            "VIOT PCI ranges 0000:00:00.0..=0000:00:01.0 and 0000:00:01.0..=0000:00:02.0 overlap"
        );
        // Adjacent is fine.
        viot_mut(&mut p).pci_ranges[1].bdf_end = 0x07;
        assert!(encode(&p).is_ok());
    }

    #[test]
    fn endpoint_ids_distinct_and_32_bit() {
        let mut p = platform_with_pci_iommu();
        // 0x28 is also the last endpoint of the first range's new numbering.
        viot_mut(&mut p).pci_ranges[0].endpoint_start = 0x20;
        assert!(matches!(encode(&p), Err(Error::ViotEndpointIdReused(0x28))));

        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).mmio_endpoints[0].endpoint = 0x0c;
        assert!(matches!(encode(&p), Err(Error::ViotEndpointIdReused(0x0c))));

        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges[0].endpoint_start = u32::MAX - 8;
        assert!(encode(&p).is_ok(), "last ID exactly u32::MAX");
        viot_mut(&mut p).pci_ranges[0].endpoint_start = u32::MAX - 7;
        assert!(matches!(encode(&p), Err(Error::ViotEndpointIdOverflow { bdf_start: 0x08, .. })));
    }

    #[test]
    fn mmio_endpoints_are_described_devices_once() {
        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).mmio_endpoints.push(ViotMmioEndpoint { base: 0xd000_0000, endpoint: 0x1_0001 });
        assert!(matches!(encode(&p), Err(Error::ViotDuplicateMmioEndpoint(0xd000_0000))));

        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).mmio_endpoints[0].base = 0xd000_0100;
        assert!(matches!(encode(&p), Err(Error::ViotMmioNotDevice(0xd000_0100))));

        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).iommu = ViotIommu::Mmio { base: 0xd000_2000 };
        assert!(matches!(encode(&p), Err(Error::ViotMmioNotDevice(0xd000_2000))));
    }

    #[test]
    fn pci_functions_below_a_host_bridge() {
        let mut p = platform_with_pci_iommu();
        p.pci_roots.clear();
        assert!(matches!(
            encode(&p),
            Err(Error::ViotPciNotOnRoot { segment: 0, bdf_start: IOMMU_BDF, bdf_end: IOMMU_BDF })
        ));

        let mut p = platform_with_pci_iommu();
        p.pci_roots[0].bus_end = 0x0f;
        viot_mut(&mut p).pci_ranges[1].bdf_end = 0x1000;
        let err = encode(&p).unwrap_err();
        assert!(matches!(err, Error::ViotPciNotOnRoot { segment: 0, bdf_start: 0x28, bdf_end: 0x1000 }));
        assert_eq!(
            err.to_string(),
            "VIOT names PCI functions 0000:00:05.0..=0000:10:00.0, which are not below any PCI host bridge \
             of the platform"
        );

        let mut p = platform_with_pci_iommu();
        viot_mut(&mut p).pci_ranges[1].segment = 1;
        assert!(matches!(encode(&p), Err(Error::ViotPciNotOnRoot { segment: 1, .. })));
    }
}
