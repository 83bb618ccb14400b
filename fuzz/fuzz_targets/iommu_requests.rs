//! The virtio-iommu request queue under a hostile driver: ATTACH, DETACH,
//! MAP, UNMAP and PROBE with arbitrary fields, in well-formed chains and in
//! arbitrary descriptor tables (split and indirect), with arbitrary
//! features, event buffers and resets.
//!
//! Oracle: no panic; after every queue run, no guest byte outside the used
//! rings and the device-writable descriptors changed.

#![no_main]

use arbitrary::Arbitrary;
use dmavm_devices::virtio::VirtioDevice;
use dmavm_fuzz::{Addr, Desc, Len, Ring, Snapshot, F_NEXT, F_WRITE};
use dmavm_iommu::device::IOMMU_FEATURES;
use dmavm_iommu::test_utils::{
    attach_req, detach_req, map_req, probe_req, unmap_req, Harness, EVENT_RINGS, MEM_SIZE, REGION_SPLIT,
    REQUEST_RINGS,
};
use dmavm_iommu::IommuConfig;
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const SIZE: u64 = MEM_SIZE as u64;
const ENDPOINTS: [u32; 3] = [1, 8, 0x100];

/// A domain or endpoint ID: mostly small (and so often one that exists).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Id {
    Small(u8),
    Raw(u32),
}

impl Id {
    fn get(self) -> u32 {
        match self {
            Id::Small(n) => u32::from(n % 16),
            Id::Raw(n) => n,
        }
    }
}

/// An IOVA or physical address: page-aligned and small, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Page {
    Page(u16),
    Raw(u64),
}

impl Page {
    fn get(self) -> u64 {
        match self {
            Page::Page(n) => u64::from(n) << 12,
            Page::Raw(a) => a,
        }
    }
}

/// How far past the start a range ends.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum End {
    Pages(u8),
    Raw(u64),
}

impl End {
    fn get(self, start: u64) -> u64 {
        match self {
            End::Pages(n) => start.wrapping_add((u64::from(n) + 1) << 12).wrapping_sub(1),
            End::Raw(e) => e,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Request {
    Attach {
        domain: Id,
        endpoint: Id,
        flags: u32,
    },
    Detach {
        domain: Id,
        endpoint: Id,
    },
    Map {
        domain: Id,
        virt: Page,
        end: End,
        phys: Page,
        flags: u8,
    },
    Unmap {
        domain: Id,
        virt: Page,
        end: End,
    },
    Probe {
        endpoint: Id,
    },
    /// Any bytes: unknown types, short and long requests.
    Raw(Vec<u8>),
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Request::Attach { domain, endpoint, flags } => attach_req(domain.get(), endpoint.get(), flags),
            Request::Detach { domain, endpoint } => detach_req(domain.get(), endpoint.get()),
            Request::Map { domain, virt, end, phys, flags } => {
                let v = virt.get();
                map_req(domain.get(), v, end.get(v), phys.get(), u32::from(flags))
            }
            Request::Unmap { domain, virt, end } => {
                let v = virt.get();
                unmap_req(domain.get(), v, end.get(v))
            }
            Request::Probe { endpoint } => probe_req(endpoint.get()),
            Request::Raw(ref b) => b.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request in a chain of the given shape, published and processed.
    Request {
        req: Request,
        /// Where the readable part goes (else a fixed buffer).
        at: Option<Addr>,
        /// Split the readable part into two descriptors at this byte.
        split: Option<u8>,
        /// The writable tail's length (4: a status; 4 + probe_size for PROBE).
        tail: Len,
        /// Put the chain in an indirect table at this address.
        indirect: Option<Addr>,
    },
    /// Raw descriptor-table and memory writes, for chain shapes the
    /// well-formed requests never make.
    Desc {
        index: u16,
        desc: Desc,
    },
    Indirect {
        at: Addr,
        entries: Vec<Desc>,
    },
    Blob {
        at: Addr,
        bytes: Vec<u8>,
    },
    Publish {
        head: u16,
        bump: u8,
    },
    UsedEvent(u16),
    Process,
    PostEvents {
        count: u8,
        len: Len,
    },
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Features the driver acks (masked to what is offered).
    features: u64,
    boot_bypass: bool,
    ops: Vec<Op>,
}

const READ_BUF: u64 = 0x1_0000;
const WRITE_BUF: u64 = 0x1_8000;

struct Rig {
    h: Harness,
    req: Ring,
    evt: Ring,
    acked: u64,
    next_desc: u16,
}

impl Rig {
    fn mem(&self) -> &GuestMemoryMmap {
        &self.h.mem
    }

    fn rings(&mut self) {
        let mem = self.h.mem.clone();
        self.req = Ring::new(&mem, REQUEST_RINGS, 256);
        self.evt = Ring::new(&mem, EVENT_RINGS, 256);
        self.next_desc = 0;
    }

    /// Runs both queues and checks the oracle.
    fn process(&mut self) {
        let mut granted = self.req.granted(self.mem(), SIZE);
        granted.extend(self.evt.granted(self.mem(), SIZE));
        let before = Snapshot::new(self.mem(), SIZE);
        // Errors are the device's answer to a broken ring; only panics and
        // stray writes are findings.
        let _ = self.h.dev.process_queue(0);
        let _ = self.h.dev.process_queue(1);
        before.assert_only_changed(self.mem(), &granted);
    }

    fn chain(&mut self, bufs: &[(u64, u32, u16)], indirect: Option<u64>) -> u16 {
        let mem = self.h.mem.clone();
        let head = self.next_desc;
        match indirect {
            Some(table) => {
                for (i, &(a, l, f)) in bufs.iter().enumerate() {
                    let (f, n) = if i + 1 < bufs.len() { (f | F_NEXT, i as u16 + 1) } else { (f, 0) };
                    let d = RawDescriptor::from(SplitDescriptor::new(a, l, f, n));
                    let _ = mem.write_obj(d, GuestAddress(table.wrapping_add(16 * i as u64)));
                }
                let d = SplitDescriptor::new(table, 16 * bufs.len() as u32, dmavm_fuzz::F_INDIRECT, 0);
                self.req.write_desc(&mem, head, RawDescriptor::from(d));
                self.next_desc = (self.next_desc + 1) % 256;
            }
            None => {
                for (i, &(a, l, f)) in bufs.iter().enumerate() {
                    let index = self.next_desc;
                    self.next_desc = (self.next_desc + 1) % 256;
                    let (f, n) = if i + 1 < bufs.len() { (f | F_NEXT, self.next_desc) } else { (f, 0) };
                    self.req.write_desc(&mem, index, RawDescriptor::from(SplitDescriptor::new(a, l, f, n)));
                }
            }
        }
        head
    }
}

fuzz_target!(|input: Input| {
    let config = IommuConfig { boot_bypass: input.boot_bypass, ..IommuConfig::default() };
    let acked = input.features & IOMMU_FEATURES;
    let h = Harness::inactive(config, &ENDPOINTS, &[(0x8000_0000, 0x8000_ffff)]);
    let req = Ring::new(&h.mem, REQUEST_RINGS, 256);
    let evt = Ring::new(&h.mem, EVENT_RINGS, 256);
    let mut rig = Rig { h, req, evt, acked, next_desc: 0 };
    rig.h.activate(acked);
    let mem = rig.h.mem.clone();
    for op in input.ops.iter().take(64) {
        match op {
            Op::Request { req, at, split, tail, indirect } => {
                let bytes = req.bytes();
                let read_at = at.map_or(READ_BUF, |a| a.resolve(SIZE, REGION_SPLIT));
                let _ = mem.write_slice(&bytes, GuestAddress(read_at));
                let tail = tail.resolve();
                let mut bufs = Vec::new();
                match split.map(usize::from) {
                    Some(s) if s < bytes.len() => {
                        bufs.push((read_at, s as u32, 0));
                        bufs.push((read_at.wrapping_add(s as u64), (bytes.len() - s) as u32, 0));
                    }
                    _ => bufs.push((read_at, bytes.len() as u32, 0)),
                }
                bufs.push((WRITE_BUF, tail, F_WRITE));
                let table = indirect.map(|a| a.resolve(SIZE, REGION_SPLIT));
                let head = rig.chain(&bufs, table);
                rig.req.publish(&mem, head, 1);
                rig.process();
            }
            Op::Desc { index, desc } => rig.req.write_desc(&mem, *index, desc.raw(SIZE, REGION_SPLIT)),
            Op::Indirect { at, entries } => {
                let at = at.resolve(SIZE, REGION_SPLIT);
                for (i, d) in entries.iter().take(32).enumerate() {
                    let _ = mem
                        .write_obj(d.raw(SIZE, REGION_SPLIT), GuestAddress(at.wrapping_add(16 * i as u64)));
                }
            }
            Op::Blob { at, bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(at.resolve(SIZE, REGION_SPLIT)));
            }
            Op::Publish { head, bump } => rig.req.publish(&mem, *head, u16::from(*bump)),
            Op::UsedEvent(v) => rig.req.set_used_event(&mem, *v),
            Op::Process => rig.process(),
            Op::PostEvents { count, len } => {
                for i in 0..u64::from(*count % 16) {
                    let at = 0x2_0000 + 0x40 * i;
                    let d = SplitDescriptor::new(at, len.resolve(), F_WRITE, 0);
                    rig.evt.write_desc(&mem, rig.evt.avail_idx, RawDescriptor::from(d));
                    let head = rig.evt.avail_idx % 256;
                    rig.evt.publish(&mem, head, 1);
                }
                rig.process();
            }
            Op::Reset => {
                rig.h.dev.reset();
                rig.rings();
                let acked = rig.acked;
                rig.h.activate(acked);
            }
        }
    }
});
