//! Test doubles and drivers for the virtio-iommu, for this crate's unit
//! tests and other crates' (enable the `test-utils` feature): canary-filled
//! guest memory, a driver-side split virtqueue whose rings may sit behind
//! IOVAs, a memory snapshot, request encoders, and a harness that speaks
//! the virtio-iommu wire protocol. Interrupts are recorded by
//! `dmavm_devices::test_utils::interrupts::Interrupts`.

// A test double that cannot set itself up has found a failed test: it
// panics, like the assertions it stands beside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use dmavm_devices::test_utils::interrupts::Interrupts;
use dmavm_devices::virtio::{Activation, VirtioDevice};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::config::IommuConfig;
use crate::device::{VirtioIommu, IOMMU_FEATURES};
#[cfg(test)]
use crate::domain::State;
use crate::request::{
    VIRTIO_IOMMU_T_ATTACH, VIRTIO_IOMMU_T_DETACH, VIRTIO_IOMMU_T_MAP, VIRTIO_IOMMU_T_PROBE,
    VIRTIO_IOMMU_T_UNMAP,
};
#[cfg(test)]
use crate::sync::read;

pub const R: u16 = 0;
pub const W: u16 = VRING_DESC_F_WRITE as u16;
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;

/// Guest memory: two regions of 2 MiB.
pub const MEM_SIZE: usize = 0x40_0000;
pub const REGION_SPLIT: u64 = 0x20_0000;

/// Where the harness puts things (guest-physical).
pub const REQUEST_RINGS: u64 = 0x0;
pub const EVENT_RINGS: u64 = 0x3000;
pub const REQ_READ: u64 = 0x1_0000;
pub const REQ_WRITE: u64 = 0x1_8000;
pub const EVENT_BUFS: u64 = 0x2_0000;
/// Data the translation tests map (1 MiB up).
pub const DATA: u64 = 0x10_0000;

pub fn canary(addr: usize) -> u8 {
    (addr % 251) as u8 ^ 0x5a
}

/// Guest memory (two regions) filled with this crate's canary pattern.
pub fn memory() -> Arc<GuestMemoryMmap> {
    dmavm_devices::test_utils::guest_memory::filled_memory(MEM_SIZE, REGION_SPLIT, canary)
}

pub fn bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// The driver's side of a split virtqueue: rings at `phys` (descriptor
/// table, then available and used rings a page apart), told to the device
/// as `device_addr` (the IOVA of `phys` when the device is translated).
#[derive(Debug)]
pub struct Vq {
    size: u16,
    phys: u64,
    device_addr: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Vq {
    pub fn new(mem: &GuestMemoryMmap, size: u16, phys: u64) -> Self {
        Self::at(mem, size, phys, phys)
    }

    pub fn at(mem: &GuestMemoryMmap, size: u16, phys: u64, device_addr: u64) -> Self {
        assert!(size.is_power_of_two() && size <= 256);
        let q = Self { size, phys, device_addr, next_desc: 0, avail_idx: 0, used_seen: 0 };
        for a in [q.avail(), q.avail() + 2, q.avail() + 4 + 2 * u64::from(size), q.used(), q.used() + 2] {
            mem.write_obj(0u16, GuestAddress(a)).unwrap();
        }
        mem.write_obj(0u16, GuestAddress(q.used() + 4 + 8 * u64::from(size))).unwrap();
        q
    }

    fn avail(&self) -> u64 {
        self.phys + 0x1000
    }

    fn used(&self) -> u64 {
        self.phys + 0x2000
    }

    /// The used ring's extent (the device may always write it).
    pub fn used_ring(&self) -> (u64, usize) {
        (self.used(), 4 + 8 * usize::from(self.size) + 2)
    }

    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(256).unwrap();
        q.set_size(self.size);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(self.device_addr);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(self.device_addr + 0x1000);
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(self.device_addr + 0x2000);
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        q
    }

    pub fn desc(&self, mem: &GuestMemoryMmap, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        mem.write_obj(d, GuestAddress(self.phys + 16 * u64::from(index))).unwrap();
    }

    /// A chain of `(addr, len, flags)` in the next free descriptors
    /// (wrapping around the table); returns its head.
    pub fn chain(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            if i + 1 < bufs.len() {
                self.desc(mem, index, addr, len, flags | NEXT, self.next_desc);
            } else {
                self.desc(mem, index, addr, len, flags, 0);
            }
        }
        head
    }

    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail() + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2)).unwrap();
    }

    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    /// The available ring's extent.
    pub fn avail_ring(&self) -> (u64, usize) {
        (self.avail(), 4 + 2 * usize::from(self.size) + 2)
    }

    /// Used entries published since the last call, as `(id, len)`; then,
    /// like Linux re-enabling callbacks, asks (`used_event`) for an
    /// interrupt on the next one.
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let idx = self.used_idx(mem);
        while self.used_seen != idx {
            let at = self.used() + 4 + 8 * u64::from(self.used_seen % self.size);
            out.push((mem.read_obj(GuestAddress(at)).unwrap(), mem.read_obj(GuestAddress(at + 4)).unwrap()));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        mem.write_obj(self.used_seen, GuestAddress(self.avail() + 4 + 2 * u64::from(self.size))).unwrap();
        out
    }
}

/// A snapshot of all of guest memory.
#[derive(Debug)]
pub struct MemCheck {
    before: Vec<u8>,
}

impl MemCheck {
    pub fn new(mem: &GuestMemoryMmap) -> Self {
        Self { before: bytes(mem, 0, MEM_SIZE) }
    }

    /// Asserts that no byte outside `allowed` (`(addr, len)`) changed.
    pub fn assert_only_changed(&self, mem: &GuestMemoryMmap, allowed: &[(u64, usize)]) {
        let now = bytes(mem, 0, MEM_SIZE);
        let inside = |a: usize| allowed.iter().any(|&(s, l)| a >= s as usize && a < s as usize + l);
        for (a, (b, n)) in self.before.iter().zip(&now).enumerate() {
            if b != n && !inside(a) {
                panic!("guest byte {a:#x} changed from {b:#04x} to {n:#04x} outside the allowed ranges");
            }
        }
    }
}

/// Request encoders (the device-readable part).
pub fn attach_req(domain: u32, endpoint: u32, flags: u32) -> Vec<u8> {
    let mut b = vec![VIRTIO_IOMMU_T_ATTACH, 0, 0, 0];
    for v in [domain, endpoint, flags, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

pub fn detach_req(domain: u32, endpoint: u32) -> Vec<u8> {
    let mut b = vec![VIRTIO_IOMMU_T_DETACH, 0, 0, 0];
    b.extend_from_slice(&domain.to_le_bytes());
    b.extend_from_slice(&endpoint.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b
}

pub fn map_req(domain: u32, virt_start: u64, virt_end: u64, phys_start: u64, flags: u32) -> Vec<u8> {
    let mut b = vec![VIRTIO_IOMMU_T_MAP, 0, 0, 0];
    b.extend_from_slice(&domain.to_le_bytes());
    for v in [virt_start, virt_end, phys_start] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&flags.to_le_bytes());
    b
}

pub fn unmap_req(domain: u32, virt_start: u64, virt_end: u64) -> Vec<u8> {
    let mut b = vec![VIRTIO_IOMMU_T_UNMAP, 0, 0, 0];
    b.extend_from_slice(&domain.to_le_bytes());
    b.extend_from_slice(&virt_start.to_le_bytes());
    b.extend_from_slice(&virt_end.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

pub fn probe_req(endpoint: u32) -> Vec<u8> {
    let mut b = vec![VIRTIO_IOMMU_T_PROBE, 0, 0, 0];
    b.extend_from_slice(&endpoint.to_le_bytes());
    b.extend_from_slice(&[0; 64]);
    b
}

/// A virtio-iommu with its two queues set up by a mock driver.
#[derive(Debug)]
pub struct Harness {
    pub mem: Arc<GuestMemoryMmap>,
    pub dev: VirtioIommu<GuestMemoryMmap>,
    pub req: Vq,
    pub evt: Vq,
    pub irq: Arc<Interrupts>,
    /// Event buffers posted so far.
    posted: u64,
    /// Where the event buffer of each descriptor is.
    event_addrs: std::collections::BTreeMap<u32, u64>,
}

impl Harness {
    /// Endpoints `endpoints`, default configuration, no extra reserved
    /// region, every feature negotiated, activated.
    pub fn new(endpoints: &[u32]) -> Self {
        Self::with(IommuConfig::default(), endpoints, &[], IOMMU_FEATURES)
    }

    pub fn with(config: IommuConfig, endpoints: &[u32], reserved: &[(u64, u64)], acked: u64) -> Self {
        let mut h = Self::inactive(config, endpoints, reserved);
        h.activate(acked);
        h
    }

    pub fn inactive(config: IommuConfig, endpoints: &[u32], reserved: &[(u64, u64)]) -> Self {
        let mem = memory();
        let req = Vq::new(&mem, 256, REQUEST_RINGS);
        let evt = Vq::new(&mem, 256, EVENT_RINGS);
        let dev = VirtioIommu::new(config, endpoints, reserved).unwrap();
        Self {
            mem,
            dev,
            req,
            evt,
            irq: Arc::new(Interrupts::default()),
            posted: 0,
            event_addrs: Default::default(),
        }
    }

    pub fn activate(&mut self, acked: u64) {
        self.dev
            .activate(Activation {
                mem: self.mem.clone(),
                queues: vec![self.req.queue(), self.evt.queue()],
                acked_features: acked,
                interrupt: self.irq.clone(),
            })
            .unwrap();
    }

    /// Sends one request: `readable` at [`REQ_READ`], `writable_len` bytes
    /// of 0xee at [`REQ_WRITE`]. Returns the used length and the writable
    /// buffer afterwards.
    pub fn send(&mut self, readable: &[u8], writable_len: u32) -> (u32, Vec<u8>) {
        let mem = self.mem.clone();
        mem.write_slice(readable, GuestAddress(REQ_READ)).unwrap();
        mem.write_slice(&vec![0xee; writable_len as usize], GuestAddress(REQ_WRITE)).unwrap();
        let mut bufs = Vec::new();
        if !readable.is_empty() {
            bufs.push((REQ_READ, readable.len() as u32, R));
        }
        bufs.push((REQ_WRITE, writable_len, W));
        let head = self.req.chain(&mem, &bufs);
        self.req.publish(&mem, head);
        self.dev.process_queue(0).unwrap();
        let used = self.req.take_used(&mem);
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].0, u32::from(head));
        (used[0].1, bytes(&mem, REQ_WRITE, writable_len as usize))
    }

    /// Sends a request with a 4-byte tail and returns its status (checking
    /// the used length and the tail's reserved bytes).
    pub fn status(&mut self, readable: &[u8]) -> u8 {
        let (len, tail) = self.send(readable, 4);
        assert_eq!(len, 4, "used length");
        assert_eq!(tail[1..], [0, 0, 0], "tail reserved bytes");
        tail[0]
    }

    /// Makes `n` more 24-byte event buffers available and notifies.
    pub fn post_event_buffers(&mut self, n: u64) {
        let mem = self.mem.clone();
        for _ in 0..n {
            let addr = EVENT_BUFS + (self.posted % 256) * 0x40;
            mem.write_slice(&[0xdd; 24], GuestAddress(addr)).unwrap();
            let head = self.evt.chain(&mem, &[(addr, 24, W)]);
            self.event_addrs.insert(u32::from(head), addr);
            self.evt.publish(&mem, head);
            self.posted += 1;
        }
        self.dev.process_queue(1).unwrap();
    }

    /// Fault reports used since the last call.
    pub fn events(&mut self) -> Vec<[u8; 24]> {
        let mem = self.mem.clone();
        self.evt
            .take_used(&mem)
            .into_iter()
            .map(|(id, len)| {
                assert_eq!(len, 24, "event used length");
                let mut e = [0u8; 24];
                mem.read_slice(&mut e, GuestAddress(self.event_addrs[&id])).unwrap();
                e
            })
            .collect()
    }

    /// A copy of the IOMMU state (for this crate's tests: the state type is
    /// private, so another crate using the `test-utils` feature could not
    /// call it, and would be warned that it is dead code).
    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        read(&self.dev.shared.state).clone()
    }
}

/// A fault report as the device writes it.
pub fn fault_bytes(reason: u8, flags: u32, endpoint: u32, address: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0] = reason;
    b[4..8].copy_from_slice(&flags.to_le_bytes());
    b[8..12].copy_from_slice(&endpoint.to_le_bytes());
    b[16..24].copy_from_slice(&address.to_le_bytes());
    b
}
