//! Endpoints' memory through the IOMMU: translated accesses, faults on the
//! event queue, the IOTLB and its invalidation, bypass modes.

use dmavm_devices::virtio::{InterruptKind, VirtioDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use crate::config::IommuConfig;
use crate::device::IOMMU_FEATURES;
use crate::fault::MAX_PENDING_FAULTS;
use crate::request::*;
use crate::test_utils::*;
use crate::{translated_memory, TranslatedMemory};

const S_OK: u8 = Status::Ok as u8;
const RD: u32 = VIRTIO_IOMMU_MAP_F_READ;
const WR: u32 = VIRTIO_IOMMU_MAP_F_WRITE;
const RW: u32 = RD | WR;

const IOVA: u64 = 0x4000_0000;
const R_DOMAIN: u8 = VIRTIO_IOMMU_FAULT_R_DOMAIN;
const R_MAPPING: u8 = VIRTIO_IOMMU_FAULT_R_MAPPING;
const F_READ: u32 = VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_ADDRESS;
const F_WRITE: u32 = VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS;

fn memory_of(h: &Harness, endpoint: u32) -> TranslatedMemory {
    translated_memory((*h.mem).clone(), h.dev.endpoint(endpoint).unwrap())
}

/// Endpoint 8 in domain 1 with, from [`IOVA`]: a read-write page onto
/// [`DATA`], a read-only page onto `DATA + 0x1000`, a write-only page onto
/// `DATA + 0x2000`. Endpoint 9 is not attached. Eight event buffers.
fn setup() -> (Harness, TranslatedMemory) {
    let mut h = Harness::new(&[8, 9]);
    h.post_event_buffers(8);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA, IOVA + 0xfff, DATA, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA + 0x1000, IOVA + 0x1fff, DATA + 0x1000, RD)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA + 0x2000, IOVA + 0x2fff, DATA + 0x2000, WR)), S_OK);
    h.irq.take();
    let tm = memory_of(&h, 8);
    (h, tm)
}

fn read(tm: &TranslatedMemory, iova: u64, len: usize) -> Result<Vec<u8>, vm_memory::GuestMemoryError> {
    let mut v = vec![0u8; len];
    tm.read_slice(&mut v, GuestAddress(iova)).map(|()| v)
}

#[test]
fn mapped_accesses_reach_guest_memory() {
    let (mut h, tm) = setup();
    assert_eq!(read(&tm, IOVA + 0x10, 64).unwrap(), bytes(&h.mem, DATA + 0x10, 64));
    // Across the read-write and the read-only mapping.
    assert_eq!(read(&tm, IOVA + 0xff0, 32).unwrap(), bytes(&h.mem, DATA + 0xff0, 32));
    tm.write_slice(&[0x42; 16], GuestAddress(IOVA + 0x100)).unwrap();
    assert_eq!(bytes(&h.mem, DATA + 0x100, 16), [0x42; 16]);
    tm.write_slice(&[0x43; 16], GuestAddress(IOVA + 0x2100)).unwrap();
    assert_eq!(bytes(&h.mem, DATA + 0x2100, 16), [0x43; 16]);
    assert!(tm.check_range(GuestAddress(IOVA), 0x2000, Permissions::Read));
    assert!(h.events().is_empty());
    assert_eq!(h.dev.stats()[0].faults, 0);
}

#[test]
fn failed_accesses_fault_once_each_and_touch_nothing() {
    let (mut h, tm) = setup();
    let check = MemCheck::new(&h.mem);

    assert!(read(&tm, IOVA + 0x10_0000, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_READ, 8, IOVA + 0x10_0000)]);

    assert!(tm.write_slice(&[1; 16], GuestAddress(IOVA + 0x1008)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_WRITE, 8, IOVA + 0x1008)]);

    // A write from the writable page into the read-only one: nothing of it
    // is written, not even its writable part.
    assert!(tm.write_slice(&[2; 16], GuestAddress(IOVA + 0xff8)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_WRITE, 8, IOVA + 0x1000)]);

    // Reading the write-only page.
    assert!(read(&tm, IOVA + 0x2000, 4).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_READ, 8, IOVA + 0x2000)]);

    // Running past the end of the address space.
    assert!(read(&tm, u64::MAX - 3, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_READ, 8, u64::MAX - 3)]);

    // `check_range` translates too, so a failed check is a fault like any
    // failed access.
    assert!(!tm.check_range(GuestAddress(IOVA), 0x2000, Permissions::Write));
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_WRITE, 8, IOVA + 0x1000)]);

    check.assert_only_changed(&h.mem, &[h.evt.used_ring(), (EVENT_BUFS, 8 * 0x40), h.evt.avail_ring()]);
    assert_eq!(h.irq.take(), vec![InterruptKind::Queue(1); 6]);
    let s = h.dev.stats();
    assert_eq!((s[0].faults, s[1].faults), (6, 0));
}

#[test]
fn detach_makes_the_next_access_fault() {
    let (mut h, tm) = setup();
    assert!(read(&tm, IOVA, 8).is_ok());
    assert_eq!(h.status(&detach_req(1, 8)), S_OK);
    assert!(read(&tm, IOVA, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, IOVA)]);
    // Attached to a fresh domain: no mapping.
    assert_eq!(h.status(&attach_req(2, 8, 0)), S_OK);
    assert!(read(&tm, IOVA, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_READ, 8, IOVA)]);
}

#[test]
fn attach_elsewhere_drops_the_old_translations() {
    let (mut h, tm) = setup();
    assert!(read(&tm, IOVA, 8).is_ok());
    // Domain 2 maps the same IOVA elsewhere.
    assert_eq!(h.status(&attach_req(2, 9, 0)), S_OK);
    assert_eq!(h.status(&map_req(2, IOVA, IOVA + 0xfff, DATA + 0x8000, RD)), S_OK);
    assert_eq!(h.status(&attach_req(2, 8, 0)), S_OK);
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA + 0x8000, 8));
}

#[test]
fn iotlb_hits_and_unmap_invalidation() {
    let mut h = Harness::new(&[8]);
    h.post_event_buffers(4);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA, IOVA + 0x1fff, DATA, RW)), S_OK);
    let tm = memory_of(&h, 8);
    let counts = |h: &Harness| {
        let s = h.dev.stats()[0];
        (s.translations, s.iotlb_misses, s.faults)
    };
    // MAP filled the IOTLB: the first access hits, on either page.
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA, 8));
    assert_eq!(read(&tm, IOVA + 0x1800, 8).unwrap(), bytes(&h.mem, DATA + 0x1800, 8));
    assert_eq!(counts(&h), (2, 0, 0));
    // UNMAP invalidates it.
    assert_eq!(h.status(&unmap_req(1, IOVA, IOVA + 0x1fff)), S_OK);
    assert!(read(&tm, IOVA + 0x1800, 8).is_err());
    assert_eq!(counts(&h), (3, 1, 1));
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_READ, 8, IOVA + 0x1800)]);
    // Mapped again elsewhere: the new target, never the stale one.
    assert_eq!(h.status(&map_req(1, IOVA, IOVA + 0xfff, DATA + 0x8000, RD)), S_OK);
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA + 0x8000, 8));
    assert_eq!(counts(&h), (4, 1, 1));
    // A re-ATTACH drops the cache: the next access misses and refills it
    // from the domain's mappings.
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA + 0x8000, 8));
    assert_eq!(read(&tm, IOVA + 8, 8).unwrap(), bytes(&h.mem, DATA + 0x8008, 8));
    assert_eq!(counts(&h), (6, 2, 1));
    assert!(tm.write_slice(&[0; 8], GuestAddress(IOVA)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_MAPPING, F_WRITE, 8, IOVA)]);
    let s = h.dev.handle().stats()[0];
    assert_eq!((s.endpoint, s.domain, s.map_requests, s.unmap_requests), (8, Some(1), 2, 1));
}

/// A translation in progress holds no lock: the driver may unmap (and the
/// device model may make other accesses) meanwhile.
#[test]
fn translations_in_progress_hold_no_lock() {
    let (mut h, tm) = setup();
    let mut slices = tm.get_slices(GuestAddress(IOVA), 0x2000, Permissions::Read).unwrap();
    let first = slices.next().unwrap().unwrap();
    assert_eq!(read(&tm, IOVA + 0x1000, 4).unwrap(), bytes(&h.mem, DATA + 0x1000, 4));
    assert_eq!(h.status(&unmap_req(1, IOVA, IOVA + 0x1fff)), S_OK);
    assert!(read(&tm, IOVA, 4).is_err());
    // The access translated before the UNMAP completes, like DMA in flight.
    assert_eq!(first.len() + slices.map(|s| s.unwrap().len()).sum::<usize>(), 0x2000);
}

#[test]
fn bypass_modes() {
    let mut h = Harness::new(&[8]);
    h.post_event_buffers(4);
    let tm = memory_of(&h, 8);
    // Unattached, bypass 0: no access at all.
    assert!(read(&tm, DATA, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, DATA)]);
    // Bypass 1: the identity.
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut h.dev, 36, &[1]);
    assert_eq!(read(&tm, DATA, 8).unwrap(), bytes(&h.mem, DATA, 8));
    tm.write_slice(&[7; 4], GuestAddress(DATA + 0x20)).unwrap();
    assert_eq!(bytes(&h.mem, DATA + 0x20, 4), [7; 4]);
    // Back to 0: the cached identity is gone.
    VirtioDevice::<GuestMemoryMmap>::write_config(&mut h.dev, 36, &[0]);
    assert!(read(&tm, DATA, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, DATA)]);
    // A bypass domain: the identity again, until detached.
    assert_eq!(h.status(&attach_req(3, 8, VIRTIO_IOMMU_ATTACH_F_BYPASS)), S_OK);
    assert_eq!(read(&tm, DATA, 8).unwrap(), bytes(&h.mem, DATA, 8));
    assert_eq!(h.status(&detach_req(3, 8)), S_OK);
    assert!(read(&tm, DATA, 8).is_err());
    assert_eq!(h.events().len(), 1);
    // Device reset detaches: with bypass 1 the endpoint is in bypass mode.
    let config = IommuConfig { boot_bypass: true, ..Default::default() };
    let mut h = Harness::with(config, &[8], &[], IOMMU_FEATURES);
    let tm = memory_of(&h, 8);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert!(read(&tm, DATA, 8).is_err());
    VirtioDevice::<GuestMemoryMmap>::reset(&mut h.dev);
    assert_eq!(read(&tm, DATA, 8).unwrap(), bytes(&h.mem, DATA, 8));
}

#[test]
fn faults_wait_for_event_buffers_and_are_bounded() {
    let mut h = Harness::new(&[8]);
    let tm = memory_of(&h, 8);
    for i in 0..3 {
        assert!(read(&tm, 0x1000 * i, 1).is_err());
    }
    assert!(h.events().is_empty());
    assert!(h.irq.take().is_empty());
    // A buffer too small for a report is returned unused; the fault waits.
    let mem = h.mem.clone();
    let small = h.evt.chain(&mem, &[(0x2_f000, 16, W)]);
    h.evt.publish(&mem, small);
    h.dev.process_queue(1).unwrap();
    assert_eq!(h.evt.take_used(&mem), vec![(u32::from(small), 0)]);
    assert_eq!(bytes(&mem, 0x2_f000, 16), (0x2_f000..0x2_f010).map(canary).collect::<Vec<_>>());
    h.post_event_buffers(2);
    let expected: Vec<_> = (0..3).map(|i| fault_bytes(R_DOMAIN, F_READ, 8, 0x1000 * i)).collect();
    assert_eq!(h.events(), expected[..2]);
    h.post_event_buffers(2);
    assert_eq!(h.events(), expected[2..]);
    // One buffer left: the rest waits, bounded.
    let n = MAX_PENDING_FAULTS as u64 + 6;
    for i in 0..n {
        assert!(read(&tm, 0x10_0000 + i, 1).is_err());
    }
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, 0x10_0000)]);
    assert_eq!(h.dev.handle().faults_dropped(), 5);
    h.post_event_buffers(200);
    let got = h.events();
    assert_eq!(got.len(), MAX_PENDING_FAULTS);
    assert_eq!(got[0], fault_bytes(R_DOMAIN, F_READ, 8, 0x10_0001));
    assert_eq!(h.dev.stats()[0].faults, 3 + n);
    // Device reset drops waiting faults.
    let mut h = Harness::new(&[8]);
    let tm = memory_of(&h, 8);
    assert!(read(&tm, 0, 1).is_err());
    VirtioDevice::<GuestMemoryMmap>::reset(&mut h.dev);
    h.activate(IOMMU_FEATURES);
    h.post_event_buffers(1);
    assert!(h.events().is_empty());
}

#[test]
fn faults_before_activation_are_delivered_after_it() {
    let mut h = Harness::inactive(IommuConfig::default(), &[8], &[]);
    let tm = memory_of(&h, 8);
    assert!(read(&tm, 0x1234, 2).is_err());
    h.activate(IOMMU_FEATURES);
    assert!(h.events().is_empty());
    h.post_event_buffers(1);
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, 0x1234)]);
    assert_eq!(h.irq.take(), vec![InterruptKind::Queue(1)]);
}

/// The IOTLBs together never hold more than `iotlb_entries`, however many
/// endpoints share the domain the guest maps into; translations evicted to
/// keep that bound come back from the domain's mappings on a miss.
#[test]
fn iotlbs_stay_within_their_budget_for_any_number_of_endpoints() {
    const BUDGET: usize = 256;
    const PAGES: u64 = 2000;
    // Each IOVA page onto one of 256 guest pages from DATA, so that the
    // translations differ from page to page.
    let phys = |page: u64| DATA + (page % 256) * 0x1000;
    for endpoints in [1u32, 8, 32] {
        let ids: Vec<u32> = (0..endpoints).collect();
        let config = IommuConfig { iotlb_entries: BUDGET, ..IommuConfig::default() };
        let mut h = Harness::with(config, &ids, &[], IOMMU_FEATURES);
        for &id in &ids {
            assert_eq!(h.status(&attach_req(1, id, 0)), S_OK);
        }
        for page in 0..PAGES {
            let iova = IOVA + page * 0x1000;
            assert_eq!(h.status(&map_req(1, iova, iova + 0xfff, phys(page), RW)), S_OK);
        }
        let cached = |h: &Harness| -> usize {
            ids.iter().map(|&id| h.dev.endpoint(id).unwrap().endpoint.cached_entries()).sum()
        };
        assert!(cached(&h) <= BUDGET, "{endpoints} endpoints: {} entries cached", cached(&h));
        // Every page, through every endpoint, twice: the first pass misses
        // on what MAP's prefill evicted.
        for _ in 0..2 {
            for &id in &ids {
                let tm = memory_of(&h, id);
                for page in (0..PAGES).step_by(7) {
                    let got = read(&tm, IOVA + page * 0x1000 + 0x10, 16).unwrap();
                    assert_eq!(got, bytes(&h.mem, phys(page) + 0x10, 16), "endpoint {id} page {page}");
                }
            }
            assert!(cached(&h) <= BUDGET, "{endpoints} endpoints: {} entries cached", cached(&h));
        }
        assert!(h.events().is_empty());
    }
}

/// An access over more mappings than an IOTLB may hold is translated
/// anyway, without being cached.
#[test]
fn translation_larger_than_the_iotlb_is_served_uncached() {
    let config = IommuConfig { iotlb_entries: 4, ..IommuConfig::default() };
    let mut h = Harness::with(config, &[8], &[], IOMMU_FEATURES);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    // Three IOVA pages onto guest pages in reverse order: three entries.
    for page in 0..3u64 {
        let iova = IOVA + page * 0x1000;
        assert_eq!(h.status(&map_req(1, iova, iova + 0xfff, DATA + (2 - page) * 0x1000, RW)), S_OK);
    }
    h.dev.endpoint(8).unwrap().endpoint.invalidate_all();
    let tm = memory_of(&h, 8);
    let got = read(&tm, IOVA + 0x800, 0x2000).unwrap();
    let mut want = bytes(&h.mem, DATA + 0x2800, 0x800);
    want.extend(bytes(&h.mem, DATA + 0x1000, 0x1000));
    want.extend(bytes(&h.mem, DATA, 0x800));
    assert_eq!(got, want);
    assert!(h.dev.endpoint(8).unwrap().endpoint.cached_entries() <= 4);
    assert!(h.events().is_empty());
}

/// A guest without a driver for the IOMMU never attaches anything: the
/// first access of a translated device says so once, naming the ways out,
/// however many accesses and endpoints fail after it.
#[test]
fn accesses_before_any_attach_are_explained_once() {
    use dmavm_devices::test_utils::log_capture;
    log_capture::install();
    // Endpoint IDs no other test uses, so the records are this test's.
    let (first, second) = (0x7e_5701, 0x7e_5702);
    let mut h = Harness::new(&[first, second]);
    h.post_event_buffers(8);
    let (tm1, tm2) = (memory_of(&h, first), memory_of(&h, second));
    for _ in 0..5 {
        assert!(read(&tm1, IOVA, 8).is_err());
        assert!(read(&tm2, IOVA, 8).is_err());
    }
    let notice = |id: u32| log_capture::records_with(&format!("virtio-iommu: endpoint {id:#x} accessed"));
    let lines = notice(first);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, log::Level::Warn);
    for way_out in ["no driver for this IOMMU", "type=vtd", "boot-bypass=on", "direct-ram-access=on"] {
        assert!(lines[0].1.contains(way_out), "{way_out}: {}", lines[0].1);
    }
    assert!(notice(second).is_empty(), "one line per IOMMU");
    // Every access still faults, as the contract wants.
    assert_eq!(h.events().len(), 8, "the event buffers filled with faults");
    assert_eq!(h.dev.stats().iter().map(|s| s.faults).sum::<u64>(), 10);
}

/// Once the driver has attached anything, an unattached endpoint's fault
/// is the driver's business: no notice.
#[test]
fn a_fault_after_the_driver_attached_is_not_explained() {
    use dmavm_devices::test_utils::log_capture;
    log_capture::install();
    let (attached, other) = (0x7e_5703, 0x7e_5704);
    let mut h = Harness::new(&[attached, other]);
    h.post_event_buffers(8);
    assert_eq!(h.status(&attach_req(1, attached, 0)), S_OK);
    assert_eq!(h.status(&detach_req(1, attached)), S_OK);
    assert!(read(&memory_of(&h, other), IOVA, 8).is_err());
    assert!(read(&memory_of(&h, attached), IOVA, 8).is_err());
    for id in [attached, other] {
        assert!(log_capture::records_with(&format!("endpoint {id:#x} accessed")).is_empty());
    }
}

/// `boot_bypass`: an endpoint attached to no domain reaches guest memory
/// untranslated, and nothing is explained or faulted.
#[test]
fn boot_bypass_lets_unattached_endpoints_through() {
    use dmavm_devices::test_utils::log_capture;
    log_capture::install();
    let id = 0x7e_5705;
    let mut h = Harness::with(
        IommuConfig { boot_bypass: true, ..IommuConfig::default() },
        &[id],
        &[],
        IOMMU_FEATURES,
    );
    h.post_event_buffers(2);
    assert_eq!(read(&memory_of(&h, id), DATA, 8).unwrap(), bytes(&h.mem, DATA, 8));
    assert!(h.events().is_empty());
    assert!(log_capture::records_with(&format!("endpoint {id:#x} accessed")).is_empty());
}

/// A device leaves endpoint 8 (hot-unplug): the endpoint is detached, its
/// domain (it was alone in it) freed with its mappings, its IOTLB empty,
/// its counters zero; the memory handle still around faults instead of
/// reaching the old mappings, and a device arriving later must attach
/// and map from scratch. An endpoint sharing the domain keeps it.
#[test]
fn a_removed_endpoint_keeps_nothing_of_its_device() {
    let (mut h, tm) = setup();
    assert_eq!(read(&tm, IOVA, 16).unwrap(), bytes(&h.mem, DATA, 16));
    assert!(h.dev.stats()[0].translations > 0);
    let handle = h.dev.handle();
    assert!(handle.endpoint_removed(8));
    assert!(!handle.endpoint_removed(0x77), "an endpoint never registered");
    let stats = handle.stats()[0];
    assert_eq!(stats, crate::EndpointStats { endpoint: 8, ..Default::default() });
    // Cached or not, the old translation is gone: the access faults (not
    // attached to a domain, bypass off).
    assert!(read(&tm, IOVA, 16).is_err());
    assert_eq!(h.events(), vec![fault_bytes(R_DOMAIN, F_READ, 8, IOVA)]);
    // Domain 1 no longer exists: its mappings went with it.
    assert_eq!(h.status(&unmap_req(1, IOVA, IOVA + 0xfff)), Status::NoEnt as u8);
    // The next device in the slot starts clean and works.
    assert_eq!(h.status(&attach_req(2, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(2, 0x9000_0000, 0x9000_0fff, DATA, RD)), S_OK);
    let fresh = memory_of(&h, 8);
    assert_eq!(read(&fresh, 0x9000_0000, 16).unwrap(), bytes(&h.mem, DATA, 16));
    assert!(read(&fresh, IOVA, 16).is_err());

    // Two endpoints in one domain: removing one leaves the other's
    // mappings alone.
    assert_eq!(h.status(&attach_req(2, 9, 0)), S_OK);
    assert!(handle.endpoint_removed(8));
    let other = memory_of(&h, 9);
    assert_eq!(read(&other, 0x9000_0000, 16).unwrap(), bytes(&h.mem, DATA, 16));
}
