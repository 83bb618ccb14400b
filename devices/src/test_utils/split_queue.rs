//! The driver's side of a split virtqueue (virtio 1.2, 2.7), written
//! straight into guest memory.

use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

use super::interrupts::Interrupts;
use crate::virtio::device::{Activation, VirtioDevice, VIRTIO_F_VERSION_1};

/// Where the test rings live: descriptor table, available ring and used
/// ring in separate pages (room for a queue of 256).
pub const DESC_TABLE: u64 = 0x0;
pub const AVAIL_RING: u64 = 0x1000;
pub const USED_RING: u64 = 0x2000;

/// Activates `device` on the queues `drivers` set up, in order, with
/// `VIRTIO_F_VERSION_1` and `features` acknowledged and interrupts
/// recorded in `irq`.
pub fn activate<M: GuestMemory + Send + Sync + 'static>(
    device: &mut dyn VirtioDevice<M>,
    mem: Arc<M>,
    drivers: &[&Driver<'_>],
    features: u64,
    irq: &Arc<Interrupts>,
) {
    device
        .activate(Activation {
            mem,
            queues: drivers.iter().map(|d| d.queue()).collect(),
            acked_features: VIRTIO_F_VERSION_1 | features,
            interrupt: irq.clone(),
        })
        .unwrap();
}

/// The used ring's extent for a queue of `size`: the device may always
/// write it.
pub fn used_ring(size: u16) -> (u64, usize) {
    (USED_RING, 4 + 8 * usize::from(size) + 2)
}

/// The driver's side of a split virtqueue (virtio 1.2, 2.7), written
/// directly into guest memory. (virtio-queue's `mock::MockSplitQueue` places
/// the used ring over the end of the available ring for queues of more than
/// a few entries, so it is not used here.)
#[derive(Debug)]
pub struct Driver<'a> {
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
    pub fn new(mem: &'a GuestMemoryMmap, size: u16) -> Self {
        Self::at(mem, size, 0)
    }

    /// Like [`Self::new`], with all three rings moved up by `offset` bytes
    /// (a second queue of the same device: `offset` = 0x3000 or more).
    pub fn at(mem: &'a GuestMemoryMmap, size: u16, offset: u64) -> Self {
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
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc_table as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail_ring as u32), Some(0));
        q.set_used_ring_address(Some(self.used_ring as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Writes descriptor `index` verbatim.
    pub fn desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        assert!(index < self.size);
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        self.mem.write_obj(d, GuestAddress(self.desc_table + 16 * u64::from(index))).unwrap();
    }

    /// Writes a chain of `(addr, len, flags)` into the next free descriptors,
    /// linked with `VIRTQ_DESC_F_NEXT`; returns its head index.
    pub fn chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
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
    pub fn indirect_table(&self, addr: u64, bufs: &[(u64, u32, u16)]) {
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
    pub fn publish(&mut self, head: u16) {
        self.put_u16(self.avail_ring + 4 + 2 * u64::from(self.avail_idx % self.size), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put_u16(self.avail_ring + 2, self.avail_idx);
    }

    /// Sets the available index directly (to misbehave).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.put_u16(self.avail_ring + 2, idx);
    }

    /// `used_event` in the available ring (`VIRTIO_RING_F_EVENT_IDX`).
    pub fn set_used_event(&self, v: u16) {
        self.put_u16(self.avail_ring + 4 + 2 * u64::from(self.size), v);
    }

    /// `avail_event` in the used ring, as the device last wrote it.
    pub fn avail_event(&self) -> u16 {
        self.get_u16(self.used_ring + 4 + 8 * u64::from(self.size))
    }

    /// The used ring's flags (`VIRTQ_USED_F_NO_NOTIFY`), as the device
    /// last wrote them.
    pub fn used_flags(&self) -> u16 {
        self.get_u16(self.used_ring)
    }

    pub fn used_idx(&self) -> u16 {
        self.get_u16(self.used_ring + 2)
    }

    /// Used ring entry `i` as `(id, len)`; it must have been published.
    pub fn used(&self, i: u16) -> (u32, u32) {
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
    pub fn used_ring(&self) -> (u64, usize) {
        (self.used_ring, 4 + 8 * usize::from(self.size) + 2)
    }
}
