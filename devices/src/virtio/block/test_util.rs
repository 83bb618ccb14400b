//! Test helpers for the queue-driven devices: guest memory filled with a
//! canary pattern, a driver-side view of a split virtqueue, an interrupt
//! recorder, and a snapshot that proves which guest bytes a request changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::bitmap::BS;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{
    Bytes, GuestAddress, GuestMemory, GuestMemoryError, GuestMemoryMmap, GuestMemoryResult, Permissions,
};

use crate::virtio::device::{InterruptKind, VirtioInterrupt};

/// Guest memory size: two adjacent regions of half this each, so buffers
/// can straddle a region boundary (at [`REGION_SPLIT`]).
pub(crate) const MEM_SIZE: usize = 0x10_0000;
pub(crate) const REGION_SPLIT: u64 = 0x8_0000;

/// The byte every guest address holds before a test runs.
pub(crate) fn canary(addr: usize) -> u8 {
    (addr % 251) as u8 ^ 0xa5
}

/// Guest memory (two regions) filled with the canary pattern.
pub(crate) fn memory() -> Arc<GuestMemoryMmap> {
    let half = MEM_SIZE / 2;
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), half), (GuestAddress(REGION_SPLIT), half)])
            .unwrap();
    let pattern: Vec<u8> = (0..MEM_SIZE).map(canary).collect();
    mem.write_slice(&pattern, GuestAddress(0)).unwrap();
    Arc::new(mem)
}

/// Where the test rings live: descriptor table, available ring and used
/// ring in separate pages (room for a queue of 256).
pub(crate) const DESC_TABLE: u64 = 0x0;
pub(crate) const AVAIL_RING: u64 = 0x1000;
pub(crate) const USED_RING: u64 = 0x2000;

/// The used ring's extent for a queue of `size`: the device may always
/// write it.
pub(crate) fn used_ring(size: u16) -> (u64, usize) {
    (USED_RING, 4 + 8 * usize::from(size) + 2)
}

/// The driver's side of a split virtqueue (virtio 1.2, 2.7), written
/// directly into guest memory. (virtio-queue's `mock::MockSplitQueue` places
/// the used ring over the end of the available ring for queues of more than
/// a few entries, so it is not used here.)
pub(crate) struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
}

impl<'a> Driver<'a> {
    /// A fresh queue of `size` entries at [`DESC_TABLE`], [`AVAIL_RING`] and
    /// [`USED_RING`]: ring headers and event fields zero, everything else
    /// keeps its canary bytes.
    pub(crate) fn new(mem: &'a GuestMemoryMmap, size: u16) -> Self {
        Self::at(mem, size, 0)
    }

    /// Like [`Self::new`], with all three rings moved up by `offset` bytes
    /// (a second queue of the same device: `offset` = 0x3000 or more).
    pub(crate) fn at(mem: &'a GuestMemoryMmap, size: u16, offset: u64) -> Self {
        assert!(size.is_power_of_two() && size <= 256);
        let d = Self {
            mem,
            size,
            next_desc: 0,
            avail_idx: 0,
            desc_table: DESC_TABLE + offset,
            avail_ring: AVAIL_RING + offset,
            used_ring: USED_RING + offset,
        };
        d.put_u16(d.avail_ring, 0);
        d.put_u16(d.avail_ring + 2, 0);
        d.set_used_event(0);
        d.put_u16(d.used_ring, 0);
        d.put_u16(d.used_ring + 2, 0);
        d.put_u16(d.used_ring + 4 + 8 * u64::from(size), 0);
        d
    }

    fn put_u16(&self, addr: u64, v: u16) {
        self.mem.write_obj(v.to_le(), GuestAddress(addr)).unwrap();
    }

    fn get_u16(&self, addr: u64) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(addr)).unwrap())
    }

    /// A queue as the transport would hand it to the device.
    pub(crate) fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc_table as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail_ring as u32), Some(0));
        q.set_used_ring_address(Some(self.used_ring as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Writes descriptor `index` verbatim.
    pub(crate) fn desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        assert!(index < self.size);
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        self.mem.write_obj(d, GuestAddress(self.desc_table + 16 * u64::from(index))).unwrap();
    }

    /// Writes a chain of `(addr, len, flags)` into the next free descriptors,
    /// linked with `VIRTQ_DESC_F_NEXT`; returns its head index.
    pub(crate) fn chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc += 1;
            if i + 1 < bufs.len() {
                self.desc(index, addr, len, flags | VRING_DESC_F_NEXT as u16, index + 1);
            } else {
                self.desc(index, addr, len, flags, 0);
            }
        }
        head
    }

    /// Writes an indirect descriptor table at `addr`, entries linked in order.
    pub(crate) fn indirect_table(&self, addr: u64, bufs: &[(u64, u32, u16)]) {
        for (i, &(a, len, flags)) in bufs.iter().enumerate() {
            let (flags, next) = if i + 1 < bufs.len() {
                (flags | VRING_DESC_F_NEXT as u16, i as u16 + 1)
            } else {
                (flags, 0)
            };
            let d = RawDescriptor::from(SplitDescriptor::new(a, len, flags, next));
            self.mem.write_obj(d, GuestAddress(addr + 16 * i as u64)).unwrap();
        }
    }

    /// Makes the chain at `head` available.
    pub(crate) fn publish(&mut self, head: u16) {
        self.put_u16(self.avail_ring + 4 + 2 * u64::from(self.avail_idx % self.size), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put_u16(self.avail_ring + 2, self.avail_idx);
    }

    /// Sets the available index directly (to misbehave).
    pub(crate) fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.put_u16(self.avail_ring + 2, idx);
    }

    /// `used_event` in the available ring (`VIRTIO_RING_F_EVENT_IDX`).
    pub(crate) fn set_used_event(&self, v: u16) {
        self.put_u16(self.avail_ring + 4 + 2 * u64::from(self.size), v);
    }

    /// `avail_event` in the used ring, as the device last wrote it.
    pub(crate) fn avail_event(&self) -> u16 {
        self.get_u16(self.used_ring + 4 + 8 * u64::from(self.size))
    }

    pub(crate) fn used_idx(&self) -> u16 {
        self.get_u16(self.used_ring + 2)
    }

    /// Used ring entry `i` as `(id, len)`; it must have been published.
    pub(crate) fn used(&self, i: u16) -> (u32, u32) {
        assert!(
            self.used_idx().wrapping_sub(i) >= 1,
            "used entry {i} not published (used idx {})",
            self.used_idx()
        );
        let addr = self.used_ring + 4 + 8 * u64::from(i % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(addr)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(addr + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    /// The used ring's extent.
    pub(crate) fn used_ring(&self) -> (u64, usize) {
        (self.used_ring, 4 + 8 * usize::from(self.size) + 2)
    }
}

/// Records every interrupt.
#[derive(Debug, Default)]
pub(crate) struct Interrupts {
    kinds: Mutex<Vec<InterruptKind>>,
}

impl Interrupts {
    pub(crate) fn count(&self) -> usize {
        self.kinds.lock().unwrap().len()
    }

    pub(crate) fn kinds(&self) -> Vec<InterruptKind> {
        self.kinds.lock().unwrap().clone()
    }
}

impl VirtioInterrupt for Interrupts {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        self.kinds.lock().unwrap().push(kind);
        Ok(())
    }
}

/// A snapshot of all of guest memory.
pub(crate) struct MemCheck {
    before: Vec<u8>,
}

impl MemCheck {
    pub(crate) fn new(mem: &GuestMemoryMmap) -> Self {
        let mut before = vec![0u8; MEM_SIZE];
        mem.read_slice(&mut before, GuestAddress(0)).unwrap();
        Self { before }
    }

    /// Asserts that no byte outside `allowed` (`(addr, len)` ranges) changed.
    pub(crate) fn assert_only_changed(&self, mem: &GuestMemoryMmap, allowed: &[(u64, usize)]) {
        let mut now = vec![0u8; MEM_SIZE];
        mem.read_slice(&mut now, GuestAddress(0)).unwrap();
        let inside = |a: usize| allowed.iter().any(|&(s, l)| a >= s as usize && a < s as usize + l);
        for (a, (b, n)) in self.before.iter().zip(&now).enumerate() {
            if b != n && !inside(a) {
                panic!("guest byte {a:#x} changed from {b:#04x} to {n:#04x} outside the allowed ranges");
            }
        }
    }

    /// How many bytes of `data` differ from the snapshot at `addr`.
    pub(crate) fn differs(&self, addr: u64, data: &[u8]) -> usize {
        let start = addr as usize;
        self.before[start..start + data.len()].iter().zip(data).filter(|(a, b)| a != b).count()
    }
}

/// Guest memory seen through a stand-in for an IOMMU: the device may read
/// `window` but not write it, as with an IOVA range mapped read-only. It
/// also shows that the devices work on any `GuestMemory`, not just
/// `GuestMemoryMmap`.
pub(crate) struct WriteProtected {
    pub(crate) inner: Arc<GuestMemoryMmap>,
    pub(crate) window: (u64, u64),
}

impl WriteProtected {
    fn denies(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        access.has_write()
            && count > 0
            && addr.0 < self.window.1
            && addr.0.saturating_add(count as u64) > self.window.0
    }
}

impl GuestMemory for WriteProtected {
    type PhysicalMemory = GuestMemoryMmap;
    type Bitmap = <GuestMemoryMmap as GuestMemory>::Bitmap;

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        !self.denies(addr, count, access) && GuestMemory::check_range(&*self.inner, addr, count, access)
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> GuestMemoryResult<impl GuestMemorySliceIterator<'a, BS<'a, Self::Bitmap>>> {
        if self.denies(addr, count, access) {
            return Err(GuestMemoryError::InvalidGuestAddress(addr));
        }
        GuestMemory::get_slices(&*self.inner, addr, count, access)
    }
}
