//! The request queue: every request type through the wire, every malformed
//! or out-of-range request with the spec's status and no state change,
//! PROBE's bytes, and hostile chains.

use dmavm_devices::virtio::{
    VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_INDIRECT;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::config::*;
use crate::device::{VirtioIommu, IOMMU_FEATURES};
use crate::request::*;
use crate::test_utils::*;

const S_OK: u8 = Status::Ok as u8;
const S_IOERR: u8 = Status::IoErr as u8;
const S_UNSUPP: u8 = Status::Unsupp as u8;
const S_INVAL: u8 = Status::Inval as u8;
const S_RANGE: u8 = Status::Range as u8;
const S_NOENT: u8 = Status::NoEnt as u8;

const RD: u32 = VIRTIO_IOMMU_MAP_F_READ;
const WR: u32 = VIRTIO_IOMMU_MAP_F_WRITE;
const RW: u32 = RD | WR;

#[test]
fn identity_features_and_configuration() {
    let dev = VirtioIommu::<GuestMemoryMmap>::new(IommuConfig::default(), &[8], &[]).unwrap();
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::device_type(&dev), 23);
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::queue_max_sizes(&dev), &[256, 256]);
    let f = VirtioDevice::<GuestMemoryMmap>::device_features(&dev);
    assert_eq!(
        f,
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_RING_F_EVENT_IDX
            | (1 << 0)
            | (1 << 1)
            | (1 << 2)
            | (1 << 4)
            | (1 << 5)
            | (1 << 6)
    );
    assert_eq!(f & VIRTIO_IOMMU_F_BYPASS, 0, "BYPASS is superseded by BYPASS_CONFIG");
    let mut c = [0xaau8; 44];
    VirtioDevice::<GuestMemoryMmap>::read_config(&dev, 0, &mut c);
    #[rustfmt::skip]
    let expected: [u8; 44] = [
        0x00, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // page_size_mask
        0, 0, 0, 0, 0, 0, 0, 0,                         // input_range.start
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,       // input_range.end
        0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,             // domain_range
        0x00, 0x02, 0, 0,                               // probe_size
        0, 0, 0, 0,                                     // bypass, reserved
        0, 0, 0, 0,                                     // past the end
    ];
    assert_eq!(c, expected);
    let mut one = [0u8; 2];
    VirtioDevice::<GuestMemoryMmap>::read_config(&dev, 32, &mut one);
    assert_eq!(one, [0x00, 0x02]);
    VirtioDevice::<GuestMemoryMmap>::read_config(&dev, u64::MAX, &mut one);
    assert_eq!(one, [0, 0]);
}

#[test]
fn bypass_is_the_only_writable_field() {
    let mut dev = VirtioIommu::<GuestMemoryMmap>::new(IommuConfig::default(), &[8], &[]).unwrap();
    let bypass = |d: &VirtioIommu<GuestMemoryMmap>| {
        let mut b = [0u8; 1];
        VirtioDevice::<GuestMemoryMmap>::read_config(d, 36, &mut b);
        b[0]
    };
    assert_eq!(bypass(&dev), 0);
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut dev, 36, &[1]);
    assert_eq!(bypass(&dev), 1);
    // Values other than 0 and 1 are ignored, and so are other fields.
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut dev, 36, &[2]);
    assert_eq!(bypass(&dev), 1);
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut dev, 0, &[0xff; 8]);
    let mut mask = [0u8; 8];
    VirtioDevice::<GuestMemoryMmap>::read_config(&dev, 0, &mut mask);
    assert_eq!(u64::from_le_bytes(mask), DEFAULT_PAGE_SIZE_MASK);
    // A 4-byte write covering bypass and its reserved bytes.
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut dev, 36, &[0, 0, 0, 0]);
    assert_eq!(bypass(&dev), 0);
    // Device reset keeps it.
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut dev, 36, &[1]);
    VirtioDevice::<GuestMemoryMmap>::reset(&mut dev);
    assert_eq!(bypass(&dev), 1);
    // The configured initial value.
    let dev = VirtioIommu::<GuestMemoryMmap>::new(
        IommuConfig { boot_bypass: true, ..Default::default() },
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(bypass(&dev), 1);
}

#[test]
fn construction_errors() {
    use crate::IommuError as E;
    let new =
        |c: IommuConfig, e: &[u32], r: &[(u64, u64)]| VirtioIommu::<GuestMemoryMmap>::new(c, e, r).err();
    let d = IommuConfig::default;
    assert_eq!(new(IommuConfig { page_size_mask: 0, ..d() }, &[], &[]), Some(E::PageSizeMask));
    assert_eq!(
        new(IommuConfig { input_range: (0, u64::MAX), ..d() }, &[], &[]),
        Some(E::InputRange { start: 0, end: u64::MAX })
    );
    assert_eq!(
        new(IommuConfig { domain_range: (5, 4), ..d() }, &[], &[]),
        Some(E::DomainRange { start: 5, end: 4 })
    );
    assert_eq!(new(d(), &[1, 2, 1], &[]), Some(E::DuplicateEndpoint(1)));
    assert_eq!(new(d(), &[], &[(0x2000, 0x1fff)]), Some(E::EmptyRegion { start: 0x2000, end: 0x1fff }));
    assert_eq!(new(d(), &[], &[(0xfef0_0000, 0xff00_0000)]), None, "adjacent is not overlapping");
    assert_eq!(
        new(d(), &[], &[(0xfeef_f000, 0xff00_0000)]),
        Some(E::OverlappingRegions(0xfee0_0000, 0xfeef_ffff, 0xfeef_f000, 0xff00_0000))
    );
    // 512 bytes hold 21 properties and the terminator, not 22.
    let regions: Vec<(u64, u64)> = (0..21).map(|i| (i << 32, (i << 32) + 0xfff)).collect();
    assert_eq!(new(d(), &[], &regions), Some(E::ProbeSizeTooSmall { probe_size: 512, needed: 22 * 24 + 4 }));
    assert_eq!(new(d(), &[], &regions[..20]), None);
    let noncoherent = |ids: &[u32]| IommuConfig { noncoherent_endpoints: ids.to_vec(), ..d() };
    assert_eq!(new(noncoherent(&[9]), &[8], &[]), Some(E::UnknownNoncoherentEndpoint(9)));
    assert_eq!(new(noncoherent(&[8]), &[8], &[]), None);
}

/// mixed-coherency=reject: endpoint 9 is non-coherent, 8 and 10 coherent.
#[test]
fn mixed_coherency_reject_keeps_domains_uniform() {
    let config = IommuConfig {
        mixed_coherency: MixedCoherency::Reject,
        noncoherent_endpoints: vec![9],
        ..IommuConfig::default()
    };
    let mut h = Harness::with(config, &[8, 9, 10], &[], IOMMU_FEATURES);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x1000, 0x1fff, 0x10_0000, RW)), S_OK);
    let before = h.state();
    // The non-coherent endpoint cannot join the coherent one's domain, and
    // nothing changes.
    assert_eq!(h.status(&attach_req(1, 9, 0)), S_UNSUPP);
    assert_eq!(h.state(), before);
    // Another coherent endpoint can; the non-coherent one gets its own.
    assert_eq!(h.status(&attach_req(1, 10, 0)), S_OK);
    assert_eq!(h.status(&attach_req(2, 9, 0)), S_OK);
    // Nor can a coherent one join the non-coherent domain.
    assert_eq!(h.status(&attach_req(2, 10, 0)), S_UNSUPP);
    assert_eq!(h.state().attached.get(&10), Some(&1));
    // A bypass domain has no mappings: anyone may share it.
    assert_eq!(h.status(&attach_req(3, 8, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_OK);
    assert_eq!(h.status(&attach_req(3, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_OK);
    let refused: Vec<(u32, u64)> = h.dev.stats().iter().map(|s| (s.endpoint, s.attach_refused)).collect();
    assert_eq!(refused, [(8, 0), (9, 1), (10, 1)]);
    assert!(h.dev.stats()[1].to_string().ends_with(", 1 refused attach"), "{}", h.dev.stats()[1]);
}

/// The default (allow): the same ATTACH succeeds.
#[test]
fn mixed_coherency_allow_shares_domains() {
    let config = IommuConfig { noncoherent_endpoints: vec![9], ..IommuConfig::default() };
    let mut h = Harness::with(config, &[8, 9], &[], IOMMU_FEATURES);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&attach_req(1, 9, 0)), S_OK);
    assert!(h.dev.stats().iter().all(|s| s.attach_refused == 0));
}

#[test]
fn attach_map_unmap_detach() {
    let mut h = Harness::new(&[8, 9]);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x1000, 0x2fff, 0x10_0000, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x3000, 0x3fff, 0x20_0000, RD)), S_OK);
    let s = h.state();
    assert_eq!(s.attached.get(&8), Some(&1));
    assert_eq!(s.domains[&1].mappings.len(), 2);
    assert_eq!(s.mapping_count, 2);
    assert_eq!(h.status(&unmap_req(1, 0x1000, 0x3fff)), S_OK);
    assert_eq!(h.state().domains[&1].mappings.len(), 0);
    assert_eq!(h.status(&detach_req(1, 8)), S_OK);
    let s = h.state();
    assert!(s.attached.is_empty());
    assert!(s.domains.is_empty(), "the last detach frees the domain");
    let stats = h.dev.stats();
    assert_eq!((stats[0].endpoint, stats[0].map_requests, stats[0].unmap_requests), (8, 2, 1));
    assert_eq!((stats[1].endpoint, stats[1].map_requests, stats[1].unmap_requests), (9, 0, 0));
}

/// Every malformed or out-of-range request: the spec's status, and the
/// state exactly as before.
#[test]
fn rejected_requests_change_nothing() {
    let config = IommuConfig { domain_range: (0, 1000), ..Default::default() };
    let mut h = Harness::with(config, &[8, 9], &[(0x8000_0000, 0x8000_ffff)], IOMMU_FEATURES);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&attach_req(2, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x10_0000, 0x10_ffff, 0x10_0000, RW)), S_OK);
    let before = h.state();

    let mut attach_reserved = attach_req(3, 9, 0);
    attach_reserved[19] = 1;
    let mut map_bad_type_bytes = map_req(1, 0, 0xfff, 0, RW);
    map_bad_type_bytes.truncate(35);
    let top = (1u64 << 48) - 1;
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        ("attach: reserved bytes", attach_reserved, S_INVAL),
        ("attach: unknown flag", attach_req(3, 9, 1 << 1), S_INVAL),
        ("attach: unknown endpoint", attach_req(1, 7, 0), S_NOENT),
        ("attach: domain out of range", attach_req(1001, 9, 0), S_RANGE),
        ("attach: bypass flag on a mapped domain", attach_req(1, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS), S_INVAL),
        ("attach: no bypass flag on a bypass domain", attach_req(2, 8, 0), S_INVAL),
        ("detach: unknown endpoint", detach_req(1, 7), S_NOENT),
        ("detach: not attached to that domain", detach_req(2, 8), S_INVAL),
        ("detach: no such domain", detach_req(5, 8), S_INVAL),
        ("detach: domain out of range", detach_req(1001, 8), S_RANGE),
        ("map: unknown flag", map_req(1, 0, 0xfff, 0, RW | 1 << 3), S_INVAL),
        ("map: unknown domain", map_req(3, 0, 0xfff, 0, RW), S_NOENT),
        ("map: domain out of range", map_req(1001, 0, 0xfff, 0, RW), S_RANGE),
        ("map: bypass domain", map_req(2, 0, 0xfff, 0, RW), S_INVAL),
        ("map: end before start", map_req(1, 0x2000, 0x1fff, 0, RW), S_INVAL),
        ("map: unaligned virt_start", map_req(1, 0x800, 0x1fff, 0, RW), S_RANGE),
        ("map: unaligned virt_end + 1", map_req(1, 0, 0x17ff, 0, RW), S_RANGE),
        ("map: unaligned phys_start", map_req(1, 0, 0xfff, 0x10, RW), S_RANGE),
        ("map: past the input range", map_req(1, top - 0xfff, top + 0x1000, 0, RW), S_RANGE),
        ("map: phys end past 2^64", map_req(1, 0, 0x1fff, u64::MAX - 0xfff, RW), S_RANGE),
        ("map: the MSI window", map_req(1, 0xfee0_0000, 0xfee0_0fff, 0, RW), S_RANGE),
        ("map: over a reserved region", map_req(1, 0x7fff_0000, 0x8000_0fff, 0, RW), S_RANGE),
        ("map: same range", map_req(1, 0x10_0000, 0x10_ffff, 0, RW), S_INVAL),
        ("map: overlapping the start", map_req(1, 0xf_f000, 0x10_0fff, 0, RW), S_INVAL),
        ("map: overlapping the end", map_req(1, 0x10_f000, 0x11_0fff, 0, RW), S_INVAL),
        ("map: inside", map_req(1, 0x10_1000, 0x10_1fff, 0, RW), S_INVAL),
        ("map: around", map_req(1, 0, 0xff_ffff, 0, RW), S_INVAL),
        ("unmap: unknown domain", unmap_req(3, 0, 0xfff), S_NOENT),
        ("unmap: domain out of range", unmap_req(1001, 0, 0xfff), S_RANGE),
        ("unmap: bypass domain", unmap_req(2, 0, 0xfff), S_INVAL),
        ("unmap: end before start", unmap_req(1, 0x2000, 0x1fff), S_INVAL),
        ("unmap: past the input range", unmap_req(1, 0, top + 1), S_RANGE),
        ("unmap: the first half of a mapping", unmap_req(1, 0x10_0000, 0x10_7fff), S_RANGE),
        ("unmap: the second half of a mapping", unmap_req(1, 0x10_8000, 0x11_ffff), S_RANGE),
        ("probe: unknown endpoint", probe_req(7), S_NOENT),
        ("map: readable part one byte short", map_bad_type_bytes, S_INVAL),
        ("attach: head only", attach_req(1, 9, 0)[..4].to_vec(), S_INVAL),
        ("no head", vec![VIRTIO_IOMMU_T_ATTACH, 0], S_INVAL),
    ];
    for (what, req, status) in cases {
        let writable = if req.first() == Some(&VIRTIO_IOMMU_T_PROBE) { 516 } else { 4 };
        let (len, out) = h.send(&req, writable);
        assert_eq!(len, writable, "{what}: used length");
        assert_eq!(out[out.len() - 4..], [status, 0, 0, 0], "{what}: status");
        assert_eq!(h.state(), before, "{what}: state changed");
    }
    // A PROBE whose properties part is smaller than probe_size.
    let (len, out) = h.send(&probe_req(8), 512 - 1 + 4);
    assert_eq!((len, out[out.len() - 4]), (515, S_INVAL));
    assert!(out[..511].iter().all(|&b| b == 0xee), "no property written");
    // Unknown types: used length 0, nothing written.
    for kind in [0u8, 6, 0xff] {
        let mut req = attach_req(1, 9, 0);
        req[0] = kind;
        let (len, out) = h.send(&req, 4);
        assert_eq!((len, out), (0, vec![0xee; 4]), "type {kind}");
    }
    assert_eq!(h.state(), before);
}

#[test]
fn requests_outside_the_negotiated_features() {
    // Neither MAP_UNMAP, PROBE, MMIO nor BYPASS_CONFIG.
    let mut h = Harness::with(IommuConfig::default(), &[8], &[], VIRTIO_F_VERSION_1);
    assert_eq!(h.status(&attach_req(1, 8, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_INVAL);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    let before = h.state();
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW)), S_UNSUPP);
    assert_eq!(h.status(&unmap_req(1, 0, 0xfff)), S_UNSUPP);
    let (len, out) = h.send(&probe_req(8), 516);
    assert_eq!((len, out[512]), (516, S_UNSUPP));
    assert_eq!(h.state(), before);
    // MMIO is a known flag only with VIRTIO_IOMMU_F_MMIO.
    let mut h = Harness::with(IommuConfig::default(), &[8], &[], IOMMU_FEATURES & !VIRTIO_IOMMU_F_MMIO);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW | VIRTIO_IOMMU_MAP_F_MMIO)), S_INVAL);
    let mut h = Harness::new(&[8]);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, WR | VIRTIO_IOMMU_MAP_F_MMIO)), S_OK);
}

#[test]
fn mapping_limit_is_nomem() {
    let config = IommuConfig { max_mappings: 2, ..Default::default() };
    let mut h = Harness::with(config, &[8], &[], IOMMU_FEATURES);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x1000, 0x1fff, 0, RW)), S_OK);
    let before = h.state();
    assert_eq!(h.status(&map_req(1, 0x2000, 0x2fff, 0, RW)), Status::NoMem as u8);
    assert_eq!(h.state(), before);
    assert_eq!(h.status(&unmap_req(1, 0, 0xfff)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x2000, 0x2fff, 0, RW)), S_OK);
}

#[test]
fn unmap_removes_whole_mappings_only() {
    let mut h = Harness::new(&[8]);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    // (4) of the spec: a = map(0, 9); unmap(0, 4) fails, nothing unmapped.
    assert_eq!(h.status(&map_req(1, 0, 0x9fff, 0, RW)), S_OK);
    assert_eq!(h.status(&unmap_req(1, 0, 0x4fff)), S_RANGE);
    assert_eq!(h.state().mapping_count, 1);
    // (1): nothing mapped there, succeeds.
    assert_eq!(h.status(&unmap_req(1, 0x10_0000, 0x10_4fff)), S_OK);
    // (7): a = map(0, 4)... with a hole: unmap over both and the hole.
    assert_eq!(h.status(&unmap_req(1, 0, 0x9fff)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0x4fff, 0, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, 0xa000, 0xefff, 0, RW)), S_OK);
    assert_eq!(h.status(&unmap_req(1, 0, 0xefff)), S_OK);
    assert_eq!(h.state().mapping_count, 0);
    // (5): a = map(0, 4), b = map(5, 9), unmap(0, 4) removes a only.
    assert_eq!(h.status(&map_req(1, 0, 0x4fff, 0, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, 0x5000, 0x9fff, 0, RW)), S_OK);
    assert_eq!(h.status(&unmap_req(1, 0, 0x4fff)), S_OK);
    let s = h.state();
    assert_eq!(s.domains[&1].mappings.keys().copied().collect::<Vec<_>>(), vec![0x5000]);
}

#[test]
fn attach_moves_an_endpoint_and_frees_the_empty_domain() {
    let mut h = Harness::new(&[8, 9]);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&attach_req(1, 9, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW)), S_OK);
    // Attaching again to the same domain changes nothing.
    let before = h.state();
    assert_eq!(h.status(&attach_req(1, 9, 0)), S_OK);
    assert_eq!(h.state(), before);
    // 9 moves to domain 2; domain 1 keeps 8 and its mapping.
    assert_eq!(h.status(&attach_req(2, 9, 0)), S_OK);
    let s = h.state();
    assert_eq!((s.attached[&8], s.attached[&9]), (1, 2));
    assert_eq!(s.domains[&1].endpoints.iter().copied().collect::<Vec<_>>(), vec![8]);
    assert_eq!(s.domains[&1].mappings.len(), 1);
    // 8 moves too: domain 1 is empty, so it is freed with its mapping.
    assert_eq!(h.status(&attach_req(2, 8, 0)), S_OK);
    let s = h.state();
    assert!(!s.domains.contains_key(&1));
    assert_eq!(s.mapping_count, 0);
    assert_eq!(s.domains[&2].endpoints.len(), 2);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW)), S_NOENT);
    // Domain 1 can be created again, as a bypass domain this time.
    assert_eq!(h.status(&attach_req(1, 8, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_OK);
    assert!(h.state().domains[&1].bypass);
    assert_eq!(h.dev.stats()[0].domain, Some(1));
}

#[test]
fn probe_reply_bytes() {
    let mut h =
        Harness::with(IommuConfig::default(), &[8], &[(0x1_0000_0000, 0x1_0000_ffff)], IOMMU_FEATURES);
    let (len, out) = h.send(&probe_req(8), 516);
    assert_eq!(len, 516);
    #[rustfmt::skip]
    let head: [u8; 48] = [
        // RESV_MEM (1), length 20, subtype MSI (1): 0xfee00000..=0xfeefffff
        0x01, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00,
        0xff, 0xff, 0xef, 0xfe, 0x00, 0x00, 0x00, 0x00,
        // RESV_MEM (1), length 20, subtype RESERVED (0): 0x1_0000_0000..=0x1_0000_ffff
        0x01, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    ];
    assert_eq!(out[..48], head);
    // The NONE terminator and zeros up to probe_size, then the tail.
    assert!(out[48..512].iter().all(|&b| b == 0));
    assert_eq!(out[512..], [S_OK, 0, 0, 0]);

    // A larger writable part: properties first, the tail at the very end,
    // the bytes between untouched.
    let (len, out) = h.send(&probe_req(8), 600);
    assert_eq!(len, 600);
    assert_eq!(out[..48], head);
    assert!(out[48..512].iter().all(|&b| b == 0));
    assert!(out[512..596].iter().all(|&b| b == 0xee));
    assert_eq!(out[596..], [S_OK, 0, 0, 0]);

    // Without an MSI region and with no reserved region: only the terminator.
    let mut h =
        Harness::with(IommuConfig { msi_region: None, ..Default::default() }, &[8], &[], IOMMU_FEATURES);
    let (len, out) = h.send(&probe_req(8), 516);
    assert_eq!(len, 516);
    assert_eq!(out, [vec![0; 512], vec![S_OK, 0, 0, 0]].concat());
}

fn write_desc(mem: &GuestMemoryMmap, addr: u64, entries: &[(u64, u32, u16, u16)]) {
    for (i, &(a, len, flags, next)) in entries.iter().enumerate() {
        let d = RawDescriptor::from(SplitDescriptor::new(a, len, flags, next));
        mem.write_obj(d, GuestAddress(addr + 16 * i as u64)).unwrap();
    }
}

/// Chains a hostile driver could build: nothing panics, nothing outside the
/// chain's writable buffers is written, and a request with a usable tail
/// still gets a status.
#[test]
fn hostile_chains() {
    let mut h = Harness::new(&[8]);
    let mem = h.mem.clone();
    mem.write_slice(&attach_req(1, 8, 0), GuestAddress(REQ_READ)).unwrap();
    let end = MEM_SIZE as u64;
    mem.write_slice(&[VIRTIO_IOMMU_T_ATTACH, 0, 0, 0], GuestAddress(end - 4)).unwrap();
    let mut expected = Vec::new();
    let mut send = |h: &mut Harness, bufs: &[(u64, u32, u16)], used: u32| {
        let head = h.req.chain(&mem, bufs);
        h.req.publish(&mem, head);
        expected.push((u32::from(head), used));
    };
    // No tail: the last descriptor is readable, or the writable part is
    // shorter than 4 bytes.
    send(&mut h, &[(REQ_READ, 20, R)], 0);
    send(&mut h, &[(REQ_READ, 20, R), (0x5_0000, 3, W)], 0);
    // A readable descriptor after a writable one.
    send(&mut h, &[(REQ_READ, 20, R), (0x5_1000, 4, W), (REQ_READ, 4, R)], 0);
    // The writable part outside guest memory, or running off its end.
    send(&mut h, &[(REQ_READ, 20, R), (end + 0x1000, 4, W)], 0);
    send(&mut h, &[(REQ_READ, 20, R), (end - 2, 4, W)], 0);
    send(&mut h, &[(REQ_READ, 20, R), (0x5_2000, 4, W), (u64::MAX - 1, 4, W)], 0);
    // The readable part outside guest memory, or its head inside and the
    // rest outside: S_IOERR in a good tail.
    send(&mut h, &[(end + 0x1000, 20, R), (0x5_3000, 4, W)], 4);
    send(&mut h, &[(end - 4, 20, R), (0x5_3100, 4, W)], 4);
    // A tail split over two descriptors, behind a split request.
    send(&mut h, &[(REQ_READ, 7, R), (REQ_READ + 7, 13, R), (0x5_4000, 1, W), (0x5_5000, 3, W)], 4);
    // An indirect table: request and tail.
    write_desc(&mem, 0x6_0000, &[(REQ_READ, 20, NEXT, 1), (0x5_6000, 4, W, 0)]);
    send(&mut h, &[(0x6_0000, 32, VRING_DESC_F_INDIRECT as u16)], 4);
    let check = MemCheck::new(&mem);
    h.dev.process_queue(0).unwrap();
    let used = h.req.take_used(&mem);
    assert_eq!(used, expected);
    assert_eq!(bytes(&mem, 0x5_3000, 4), [S_IOERR, 0, 0, 0]);
    assert_eq!(bytes(&mem, 0x5_3100, 4), [S_IOERR, 0, 0, 0]);
    assert_eq!(bytes(&mem, 0x5_4000, 1), [S_OK]);
    assert_eq!(bytes(&mem, 0x5_5000, 3), [0, 0, 0]);
    assert_eq!(bytes(&mem, 0x5_6000, 4), [S_OK, 0, 0, 0]);
    check.assert_only_changed(
        &mem,
        &[
            h.req.used_ring(),
            h.req.avail_ring(),
            (0x5_3000, 4),
            (0x5_3100, 4),
            (0x5_4000, 1),
            (0x5_5000, 3),
            (0x5_6000, 4),
        ],
    );

    // Structurally broken chains: a loop, a next index outside the table is
    // impossible with 256 entries, so a nested indirect table.
    h.req.desc(&mem, 200, REQ_READ, 20, NEXT, 201);
    h.req.desc(&mem, 201, 0x5_7000, 4, W | NEXT, 200);
    h.req.publish(&mem, 200);
    write_desc(&mem, 0x6_1000, &[(0x6_0000, 32, VRING_DESC_F_INDIRECT as u16, 0)]);
    h.req.desc(&mem, 202, 0x6_1000, 16, VRING_DESC_F_INDIRECT as u16, 0);
    h.req.publish(&mem, 202);
    let check = MemCheck::new(&mem);
    h.dev.process_queue(0).unwrap();
    assert_eq!(h.req.take_used(&mem), vec![(200, 0), (202, 0)]);
    check.assert_only_changed(&mem, &[h.req.used_ring(), h.req.avail_ring()]);
}

#[test]
fn notification_before_activation_and_unknown_queue_are_ignored() {
    let mut h = Harness::inactive(IommuConfig::default(), &[8], &[]);
    let mem = h.mem.clone();
    mem.write_slice(&attach_req(1, 8, 0), GuestAddress(REQ_READ)).unwrap();
    let head = h.req.chain(&mem, &[(REQ_READ, 20, R), (REQ_WRITE, 4, W)]);
    h.req.publish(&mem, head);
    h.dev.process_queue(0).unwrap();
    assert!(h.req.take_used(&mem).is_empty());
    h.activate(IOMMU_FEATURES);
    h.dev.process_queue(2).unwrap();
    assert!(h.req.take_used(&mem).is_empty());
    h.dev.process_queue(0).unwrap();
    assert_eq!(h.req.take_used(&mem), vec![(u32::from(head), 4)]);
    assert_eq!(h.irq.take(), vec![dmavm_devices::virtio::InterruptKind::Queue(0)]);
}

#[test]
fn reset_detaches_everything() {
    let mut h = Harness::new(&[8]);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, 0, 0xfff, 0, RW)), S_OK);
    VirtioDevice::<GuestMemoryMmap>::reset(&mut h.dev);
    let s = h.state();
    assert!(s.attached.is_empty() && s.domains.is_empty() && s.mapping_count == 0);
}
