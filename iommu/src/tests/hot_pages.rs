//! The threads' hot pages in front of the IOTLB: a removal overlapping a
//! hot page makes the next access through it fault, in every thread; one
//! elsewhere keeps it; what a page allows is what it served; the cache
//! stays within its bounds and keeps the pages used on every request.

use std::sync::mpsc;

use vm_memory::{Bytes, GuestAddress};

use crate::request::*;
use crate::test_utils::*;
use crate::{translated_memory, TranslatedMemory};
use dmavm_translation::hot_pages::{self, PAGE, SLOTS};

const S_OK: u8 = Status::Ok as u8;
const RD: u32 = VIRTIO_IOMMU_MAP_F_READ;
const WR: u32 = VIRTIO_IOMMU_MAP_F_WRITE;
const RW: u32 = RD | WR;
const IOVA: u64 = 0x4000_0000;
/// 64 read-write pages from `RING_IOVA + PAGE` on, for single requests.
const RING_IOVA: u64 = 0x5000_0000;
const F_READ: u32 = VIRTIO_IOMMU_FAULT_F_READ | VIRTIO_IOMMU_FAULT_F_ADDRESS;
const F_WRITE: u32 = VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS;

/// Endpoint 8 in domain 1: a read-write page at `IOVA` onto `DATA`, a
/// read-only one after it, a write-only one after that, and 65 read-write
/// pages at `RING_IOVA` onto `DATA + 0x10000`.
fn setup() -> (Harness, TranslatedMemory) {
    let mut h = Harness::new(&[8, 9]);
    h.post_event_buffers(8);
    assert_eq!(h.status(&attach_req(1, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA, IOVA + 0xfff, DATA, RW)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA + 0x1000, IOVA + 0x1fff, DATA + 0x1000, RD)), S_OK);
    assert_eq!(h.status(&map_req(1, IOVA + 0x2000, IOVA + 0x2fff, DATA + 0x2000, WR)), S_OK);
    assert_eq!(h.status(&map_req(1, RING_IOVA, RING_IOVA + 65 * PAGE - 1, DATA + 0x1_0000, RW)), S_OK);
    h.irq.take();
    let tm = translated_memory((*h.mem).clone(), h.dev.endpoint(8).unwrap());
    (h, tm)
}

fn read(tm: &TranslatedMemory, iova: u64, len: usize) -> Result<Vec<u8>, vm_memory::GuestMemoryError> {
    let mut v = vec![0u8; len];
    tm.read_slice(&mut v, GuestAddress(iova)).map(|()| v)
}

fn holds(tm: &TranslatedMemory, page: u64) -> bool {
    hot_pages::holds(&tm.iommu().endpoint.hot, page)
}

#[test]
fn small_accesses_make_their_page_hot_and_are_served_from_it() {
    let (h, tm) = setup();
    assert!(!holds(&tm, IOVA));
    assert_eq!(read(&tm, IOVA + 0x10, 8).unwrap(), bytes(&h.mem, DATA + 0x10, 8));
    assert!(holds(&tm, IOVA));
    // Served from the page: right bytes, no miss, every access counted.
    assert_eq!(read(&tm, IOVA + 0xff8, 8).unwrap(), bytes(&h.mem, DATA + 0xff8, 8));
    tm.write_obj(0x5au8, GuestAddress(IOVA + 0x20)).unwrap();
    assert_eq!(bytes(&h.mem, DATA + 0x20, 1), vec![0x5a]);
    let s = h.dev.stats()[0];
    assert_eq!((s.translations, s.iotlb_misses, s.faults), (3, 0, 0));
    // An access across two pages makes neither hot.
    assert_eq!(read(&tm, IOVA + 0xffc, 8).unwrap(), bytes(&h.mem, DATA + 0xffc, 8));
    assert!(!holds(&tm, IOVA + 0x1000));
}

#[test]
fn an_unmap_of_a_hot_page_makes_the_next_access_fault() {
    let (mut h, tm) = setup();
    assert!(read(&tm, RING_IOVA + 8, 8).is_ok());
    assert!(holds(&tm, RING_IOVA));
    // The ring's page and the next go.
    assert_eq!(h.status(&unmap_req(1, RING_IOVA, RING_IOVA + 65 * PAGE - 1)), S_OK);
    assert!(read(&tm, RING_IOVA + 8, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_READ, 8, RING_IOVA + 8)]);
    assert!(!holds(&tm, RING_IOVA));
    assert!(tm.write_obj(1u16, GuestAddress(RING_IOVA + 2)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_WRITE, 8, RING_IOVA + 2)]);
}

#[test]
fn an_unmap_elsewhere_keeps_the_hot_page() {
    let (mut h, tm) = setup();
    assert!(read(&tm, IOVA, 8).is_ok());
    assert!(read(&tm, IOVA + 0x1000, 8).is_ok());
    assert_eq!(h.status(&unmap_req(1, IOVA + 0x1000, IOVA + 0x1fff)), S_OK);
    assert!(holds(&tm, IOVA));
    assert!(!holds(&tm, IOVA + 0x1000));
    assert_eq!(read(&tm, IOVA + 8, 8).unwrap(), bytes(&h.mem, DATA + 8, 8));
    assert!(read(&tm, IOVA + 0x1008, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_READ, 8, IOVA + 0x1008)]);
}

#[test]
fn detach_and_domain_changes_drop_hot_pages() {
    let (mut h, tm) = setup();
    assert!(read(&tm, IOVA, 8).is_ok());
    assert_eq!(h.status(&detach_req(1, 8)), S_OK);
    assert!(!holds(&tm, IOVA));
    assert!(read(&tm, IOVA, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_DOMAIN, F_READ, 8, IOVA)]);
    // Domain 2 maps the same IOVA elsewhere; endpoint 8 goes there from
    // domain 3, where the page was hot.
    assert_eq!(h.status(&attach_req(3, 8, 0)), S_OK);
    assert_eq!(h.status(&map_req(3, IOVA, IOVA + 0xfff, DATA, RW)), S_OK);
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA, 8));
    assert!(holds(&tm, IOVA));
    assert_eq!(h.status(&attach_req(2, 9, 0)), S_OK);
    assert_eq!(h.status(&map_req(2, IOVA, IOVA + 0xfff, DATA + 0x8000, RD)), S_OK);
    assert_eq!(h.status(&attach_req(2, 8, 0)), S_OK);
    assert_eq!(read(&tm, IOVA, 8).unwrap(), bytes(&h.mem, DATA + 0x8000, 8));
    assert!(tm.write_obj(0u64, GuestAddress(IOVA)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_WRITE, 8, IOVA)]);
}

#[test]
fn a_hot_page_allows_only_what_its_mapping_does() {
    let (mut h, tm) = setup();
    assert!(read(&tm, IOVA + 0x1000, 8).is_ok());
    assert!(holds(&tm, IOVA + 0x1000));
    assert!(tm.write_obj(0u64, GuestAddress(IOVA + 0x1000)).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_WRITE, 8, IOVA + 0x1000)]);
    assert!(tm.write_obj(7u64, GuestAddress(IOVA + 0x2000)).is_ok());
    assert!(holds(&tm, IOVA + 0x2000));
    assert!(read(&tm, IOVA + 0x2000, 8).is_err());
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_READ, 8, IOVA + 0x2000)]);
    assert_eq!(
        bytes(&h.mem, DATA + 0x1000, 8),
        (0..8).map(|i| canary(DATA as usize + 0x1000 + i)).collect::<Vec<_>>()
    );
}

/// Each thread has its own hot pages; a removal reaches all of them.
#[test]
fn a_removal_reaches_the_hot_pages_of_other_threads() {
    let (mut h, tm) = setup();
    let (to_device, device_rx) = mpsc::channel::<()>();
    let (device_tx, from_device) = mpsc::channel();
    let device_tm = tm.clone();
    let device = std::thread::spawn(move || {
        let first = read(&device_tm, RING_IOVA, 8).is_ok() && holds(&device_tm, RING_IOVA);
        device_tx.send(first).unwrap();
        device_rx.recv().unwrap();
        let after_unmap = read(&device_tm, RING_IOVA, 8).is_err() && !holds(&device_tm, RING_IOVA);
        device_tx.send(after_unmap).unwrap();
    });
    assert!(from_device.recv().unwrap(), "the device thread's access made its page hot");
    assert!(!holds(&tm, RING_IOVA), "hot pages are the thread's own");
    assert_eq!(h.status(&unmap_req(1, RING_IOVA, RING_IOVA + 65 * PAGE - 1)), S_OK);
    to_device.send(()).unwrap();
    assert!(from_device.recv().unwrap(), "the device thread's next access faulted");
    device.join().unwrap();
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_READ, 8, RING_IOVA)]);
}

/// A page used on every request stays hot while single requests' pages
/// come and go, and no more than `SLOTS` pages are held.
#[test]
fn ring_pages_stay_hot_among_single_use_pages_within_the_bound() {
    let (h, tm) = setup();
    for request in 1..=64u64 {
        assert!(read(&tm, RING_IOVA + 2, 2).is_ok());
        let buffer = RING_IOVA + request * PAGE;
        assert_eq!(read(&tm, buffer, 16).unwrap(), bytes(&h.mem, DATA + 0x1_0000 + request * PAGE, 16));
        assert!(read(&tm, buffer + 16, 1).is_ok());
        assert!(holds(&tm, RING_IOVA), "request {request}");
        assert!(hot_pages::held(&tm.iommu().endpoint.hot) <= SLOTS);
    }
    assert_eq!(hot_pages::held(&tm.iommu().endpoint.hot), SLOTS);
    assert_eq!(h.dev.stats()[0].faults, 0);
}

/// Translations served from a thread's hot pages count like any other,
/// after the thread ended too, and go back to zero with the endpoint's
/// counters.
#[test]
fn hot_translations_are_counted_exactly() {
    let (h, tm) = setup();
    let device_tm = tm.clone();
    std::thread::spawn(move || {
        for _ in 0..10 {
            read(&device_tm, IOVA, 8).unwrap();
        }
        assert!(holds(&device_tm, IOVA));
    })
    .join()
    .unwrap();
    let s = h.dev.stats()[0];
    assert_eq!((s.translations, s.iotlb_misses), (10, 0));
    for _ in 0..3 {
        read(&tm, IOVA, 8).unwrap();
    }
    assert_eq!(h.dev.stats()[0].translations, 13);
    let handle = h.dev.handle();
    assert!(handle.endpoint_removed(8));
    assert_eq!(h.dev.stats()[0].translations, 0);
    assert!(read(&tm, IOVA, 8).is_err());
    assert_eq!(h.dev.stats()[0].translations, 1);
}

#[test]
fn range_checks_answer_from_the_hot_page_as_accesses_do() {
    use vm_memory::{GuestMemory, Permissions};
    let (mut h, tm) = setup();
    // The read-only page made hot by a read.
    assert_eq!(read(&tm, IOVA + 0x1008, 8).unwrap(), bytes(&h.mem, DATA + 0x1008, 8));
    assert!(holds(&tm, IOVA + 0x1000));
    assert!(tm.check_range(GuestAddress(IOVA + 0x1010), 8, Permissions::Read));
    // Not with a permission the mapping lacks: the full path faults.
    assert!(!tm.check_range(GuestAddress(IOVA + 0x1010), 8, Permissions::Write));
    assert_eq!(h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, F_WRITE, 8, IOVA + 0x1010)]);
    // Nor once it is unmapped.
    assert_eq!(h.status(&unmap_req(1, IOVA + 0x1000, IOVA + 0x1fff)), S_OK);
    assert!(!tm.check_range(GuestAddress(IOVA + 0x1010), 8, Permissions::Read));
    assert!(!holds(&tm, IOVA + 0x1000));
    // A translated memory is no view of guest-physical memory.
    assert!(tm.physical_memory().is_none());
}
