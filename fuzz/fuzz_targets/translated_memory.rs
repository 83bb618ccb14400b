//! Memory translated through a virtio-iommu endpoint, as a device behind
//! it sees it: arbitrary ATTACH/DETACH/MAP/UNMAP requests from the driver,
//! interleaved with the device's reads and writes at arbitrary IOVAs and
//! lengths (the IOTLB fills, is evicted and must be invalidated).
//!
//! Oracle: no panic; a model of the mappings (updated from the requests
//! that returned OK, with virtio-iommu's rules: UNMAP removes the mappings
//! starting inside its range, a domain dies with its last endpoint) says
//! what the device may touch. A write that succeeds changes no guest byte
//! outside the physical images of its IOVAs, and only through writable
//! mappings; a read that succeeds returns what the readable mappings show;
//! a failed write changes nothing but the writable mappings' images and
//! the fault report the IOMMU writes into its event queue. Once the driver
//! has let the endpoint write over that queue's descriptors or available
//! ring (by mapping them writable), the IOMMU's fault reports go wherever
//! the overwritten descriptors say, so from then on the input's writes get
//! only the no-panic oracle.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use dmavm_fuzz::{push_clipped, IommuRig, Snapshot, IOMMU_EVENT_BUFS, IOMMU_EVT_RINGS, MEM_SIZE};
use dmavm_iommu::request::{Status, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};
use dmavm_iommu::test_utils::{attach_req, detach_req, map_req, unmap_req};
use dmavm_iommu::{translated_memory, IommuConfig};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

const EP: u32 = 8;
const OK: u8 = Status::Ok as u8;
/// The event queue's descriptor table and available ring, from
/// `IOMMU_EVT_RINGS`: what says where the IOMMU writes its fault reports.
const EVENT_RING_DRIVER_PART: u64 = 0x2000;

#[derive(Arbitrary, Debug)]
enum Op {
    Attach {
        domain: u8,
    },
    Detach {
        domain: u8,
    },
    /// `pages` pages from IOVA page `virt` onto physical page `phys`.
    Map {
        virt: u16,
        pages: u8,
        phys: u16,
        flags: u8,
    },
    Unmap {
        virt: u16,
        pages: u16,
    },
    Read {
        iova: u32,
        len: u16,
    },
    Write {
        iova: u32,
        len: u16,
        byte: u8,
    },
}

/// A mapping of the model: `[start, end]` onto `phys`, with flags.
type Maps = BTreeMap<u64, (u64, u64, u32)>;

#[derive(Default)]
struct Model {
    domain: Option<u32>,
    maps: BTreeMap<u32, Maps>,
}

impl Model {
    fn current(&self) -> Option<&Maps> {
        self.domain.and_then(|d| self.maps.get(&d))
    }

    /// The guest-physical address of `iova` if a mapping with `perm` covers it.
    fn translate(&self, iova: u64, perm: u32) -> Option<u64> {
        let (&s, &(e, p, f)) = self.current()?.range(..=iova).next_back()?;
        (iova <= e && f & perm == perm).then_some(p + (iova - s))
    }
}

fuzz_target!(|ops: Vec<Op>| dmavm_fuzz::within_cpu_budget(|| {
    // Small IOTLB: eviction and refill happen within a few accesses.
    let config = IommuConfig { iotlb_entries: 4, ..IommuConfig::default() };
    let mut h = IommuRig::new(config, &[EP], &[], dmavm_iommu::device::IOMMU_FEATURES);
    h.post_events(8, 24);
    let tm = translated_memory((*h.mem).clone(), h.dev.endpoint(EP).unwrap());
    let mut model = Model::default();
    let mut event_ring_overwritten = false;
    for op in ops.iter().take(64) {
        match *op {
            Op::Attach { domain } => {
                let d = u32::from(domain % 4);
                if h.status(&attach_req(d, EP, 0)) == OK {
                    if let Some(old) = model.domain.replace(d) {
                        if old != d {
                            model.maps.remove(&old);
                        }
                    }
                    model.maps.entry(d).or_default();
                }
            }
            Op::Detach { domain } => {
                let d = u32::from(domain % 4);
                if h.status(&detach_req(d, EP)) == OK {
                    assert_eq!(model.domain, Some(d), "DETACH of a domain the endpoint is not in");
                    model.domain = None;
                    model.maps.remove(&d);
                }
            }
            Op::Map { virt, pages, phys, flags } => {
                let Some(d) = model.domain else { continue };
                let (s, p) = (u64::from(virt) << 12, u64::from(phys % 0x40) << 12);
                let e = s + ((u64::from(pages % 8) + 1) << 12) - 1;
                let f = u32::from(flags & 3);
                if h.status(&map_req(d, s, e, p, f)) == OK {
                    model.maps.entry(d).or_default().insert(s, (e, p, f));
                }
            }
            Op::Unmap { virt, pages } => {
                let Some(d) = model.domain else { continue };
                let s = u64::from(virt) << 12;
                let e = s + ((u64::from(pages) + 1) << 12) - 1;
                if h.status(&unmap_req(d, s, e)) == OK {
                    if let Some(m) = model.maps.get_mut(&d) {
                        let starts: Vec<u64> = m.range(s..=e).map(|(k, _)| *k).collect();
                        for k in starts {
                            m.remove(&k);
                        }
                    }
                }
            }
            Op::Read { iova, len } => {
                let (iova, len) = (u64::from(iova), usize::from(len % 0x2000));
                let mut buf = vec![0u8; len];
                if tm.read_slice(&mut buf, GuestAddress(iova)).is_ok() {
                    // Page by page: mappings are whole pages.
                    let mut done = 0;
                    while done < len {
                        let at = iova + done as u64;
                        let chunk = (0x1000 - (at & 0xfff) as usize).min(len - done);
                        let p = model.translate(at, VIRTIO_IOMMU_MAP_F_READ);
                        let p = p.unwrap_or_else(|| panic!("read of unmapped IOVA {at:#x} succeeded"));
                        let mut want = vec![0u8; chunk];
                        h.mem.read_slice(&mut want, GuestAddress(p)).unwrap();
                        assert!(
                            buf[done..done + chunk] == want[..],
                            "IOVA {at:#x}+{chunk:#x} read the wrong bytes"
                        );
                        done += chunk;
                    }
                }
            }
            Op::Write { iova, len, byte } => {
                let (iova, len) = (u64::from(iova), usize::from(len % 0x2000));
                let before = Snapshot::new(&h.mem, MEM_SIZE);
                // Bytes guaranteed to differ from the canary somewhere.
                let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                let written = tm.write_slice(&data, GuestAddress(iova)).is_ok();
                // A write that fails part-way (here: a writable mapping onto
                // a page past the end of RAM) may have written its start, as
                // DMA that faults midway does; so the writable mappings'
                // images are granted whether it failed or not. Mappings are
                // whole pages, so one translation serves a page.
                let mut granted = Vec::new();
                let (mut at, end) = (iova, iova + len as u64);
                while at < end {
                    let page_end = ((at >> 12) + 1) << 12;
                    let chunk = page_end.min(end) - at;
                    match model.translate(at, VIRTIO_IOMMU_MAP_F_WRITE) {
                        Some(p) => push_clipped(&mut granted, p, chunk, MEM_SIZE),
                        None => assert!(!written, "write to unwritable IOVA {at:#x} succeeded"),
                    }
                    at += chunk;
                }
                event_ring_overwritten |= granted.iter().any(|&(at, len)| {
                    at < IOMMU_EVT_RINGS + EVENT_RING_DRIVER_PART && IOMMU_EVT_RINGS < at + len as u64
                });
                // The used ring and event buffers are the IOMMU's own writes
                // (fault reports), not the endpoint's: allowed too.
                push_clipped(&mut granted, IOMMU_EVT_RINGS, 0x3000, MEM_SIZE);
                push_clipped(&mut granted, IOMMU_EVENT_BUFS, 0x40 * 64, MEM_SIZE);
                if !event_ring_overwritten {
                    before.assert_only_changed(&h.mem, &granted);
                }
            }
        }
    }
}));
