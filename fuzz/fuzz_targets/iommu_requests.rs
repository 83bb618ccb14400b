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
use dmavm_fuzz::{
    Addr, Desc, IommuRig, Len, F_WRITE, IOMMU_REQ_READ, IOMMU_REQ_WRITE, MEM_SIZE, REGION_SPLIT,
};
use dmavm_iommu::device::IOMMU_FEATURES;
use dmavm_iommu::test_utils::{attach_req, detach_req, map_req, probe_req, unmap_req};
use dmavm_iommu::IommuConfig;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

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

fuzz_target!(|input: Input| dmavm_fuzz::within_cpu_budget(|| {
    let config = IommuConfig { boot_bypass: input.boot_bypass, ..IommuConfig::default() };
    let acked = input.features & IOMMU_FEATURES;
    let mut rig = IommuRig::new(config, &ENDPOINTS, &[(0x8000_0000, 0x8000_ffff)], acked);
    let mem = rig.mem.clone();
    let resolve = |a: &Addr| a.resolve(MEM_SIZE, REGION_SPLIT);
    for op in input.ops.iter().take(64) {
        match op {
            Op::Request { req, at, split, tail, indirect } => {
                let bytes = req.bytes();
                let read_at = at.as_ref().map_or(IOMMU_REQ_READ, resolve);
                let _ = mem.write_slice(&bytes, GuestAddress(read_at));
                let mut bufs = Vec::new();
                match split.map(usize::from) {
                    Some(s) if s < bytes.len() => {
                        bufs.push((read_at, s as u32, 0));
                        bufs.push((read_at.wrapping_add(s as u64), (bytes.len() - s) as u32, 0));
                    }
                    _ => bufs.push((read_at, bytes.len() as u32, 0)),
                }
                bufs.push((IOMMU_REQ_WRITE, tail.resolve(), F_WRITE));
                let table = indirect.as_ref().map(resolve);
                let head = rig.chain(&bufs, table);
                rig.req.publish(&mem, head, 1);
                rig.process();
            }
            Op::Desc { index, desc } => rig.req.write_desc(&mem, *index, desc.raw(MEM_SIZE, REGION_SPLIT)),
            Op::Indirect { at, entries } => {
                let at = resolve(at);
                for (i, d) in entries.iter().take(32).enumerate() {
                    let d = d.raw(MEM_SIZE, REGION_SPLIT);
                    let _ = mem.write_obj(d, GuestAddress(at.wrapping_add(16 * i as u64)));
                }
            }
            Op::Blob { at, bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(resolve(at)));
            }
            Op::Publish { head, bump } => rig.req.publish(&mem, *head, u16::from(*bump)),
            Op::UsedEvent(v) => rig.req.set_used_event(&mem, *v),
            Op::Process => rig.process(),
            Op::PostEvents { count, len } => rig.post_events(u64::from(*count % 16), len.resolve()),
            Op::Reset => {
                rig.dev.reset();
                rig.activate();
            }
        }
    }
}));
