//! [`PoolMemory`]: guest memory as a device confined to a restricted DMA
//! pool reaches it. Every access the device model makes (ring, descriptor,
//! buffer) goes through [`PoolMemory::get_slices`] or
//! [`PoolMemory::check_range`], which let through exactly the accesses
//! that lie inside the pool, at their guest-physical address, and refuse
//! the others: counted, logged within the device's [`GuestLogBudget`], and
//! with nothing read or written.
//!
//! A wrapper of its own rather than vm-memory's `IommuMemory` over an
//! `Iommu` that identity-maps the pool: the bounds are two comparisons,
//! after which the access takes guest memory's own path, where an IOTLB
//! lookup per access (three range-map searches) cost a quarter of a 4 KiB
//! request (docs/benchmarks.md). A range running past the end of the
//! address space is refused too. [`GuestMemory::physical_memory`] stays
//! `None`, so no caller can reach the memory around the bounds.
//!
//! A device model sees a refused access as it sees an IOMMU fault on a
//! translated device: its request fails (virtio-blk `VIRTIO_BLK_S_IOERR`,
//! or the chain is dropped when even its status byte is out of reach), and
//! a queue whose rings lie outside the pool cannot be used (the transport
//! refuses to activate the device and sets `DEVICE_NEEDS_RESET`, as for
//! any unreadable ring, virtio 1.3, 2.1.2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_memory::bitmap::BS;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::iommu::{Error as TranslateError, IovaRange};
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestMemoryRegion,
    Permissions,
};

use crate::log_limit::GuestLogBudget;

/// What a pool device's accesses did: shared between its memory view and
/// whoever reports them (`--stats`).
#[derive(Debug, Default)]
pub struct PoolCounters {
    inside: AtomicU64,
    refused: AtomicU64,
    budget: GuestLogBudget,
}

impl PoolCounters {
    /// Accesses that lay inside the pool (one per ring, descriptor or
    /// buffer access of the device model).
    pub fn inside(&self) -> u64 {
        self.inside.load(Ordering::Relaxed)
    }

    /// Accesses refused because they reached outside the pool.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The pool `[base, end)` of one device, with its counters and the name
/// its log messages give it.
#[derive(Debug)]
pub struct PoolBounds {
    base: u64,
    end: u64,
    counters: Arc<PoolCounters>,
    label: String,
}

/// Why a pool cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// An empty pool, or one past the end of the address space.
    #[error("restricted DMA pool {base:#x}+{size:#x} is empty or runs past the end of the address space")]
    Range {
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
}

impl PoolBounds {
    /// Bounds of the pool of `size` bytes at `base`, counting into
    /// `counters` and naming the device `label` in its log messages.
    pub fn new(base: u64, size: u64, counters: Arc<PoolCounters>, label: &str) -> Result<Self, PoolError> {
        let end = base.checked_add(size).filter(|_| size > 0).ok_or(PoolError::Range { base, size })?;
        Ok(Self { base, end, counters, label: label.to_string() })
    }

    /// The pool's first byte and one past its last.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.end)
    }

    /// Whether `count` bytes at `addr` lie inside the pool; counts the
    /// access either way and logs a refusal.
    fn admit(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        let end = u64::try_from(count).ok().and_then(|l| addr.0.checked_add(l));
        let inside = addr.0 >= self.base && end.is_some_and(|e| e <= self.end);
        if inside {
            // A plain load and store, not a locked read-modify-write: this
            // is on every access of the device (a dozen per request), and
            // a device's queues are processed by one thread at a time, so
            // at worst a count is lost when two threads race, never an
            // access let through.
            let n = self.counters.inside.load(Ordering::Relaxed);
            self.counters.inside.store(n.wrapping_add(1), Ordering::Relaxed);
        } else {
            self.refuse(addr, count, access);
        }
        inside
    }

    fn refuse(&self, addr: GuestAddress, count: usize, access: Permissions) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        let what = if access.has_write() { "write" } else { "read" };
        crate::guest_log!(
            self.counters.budget,
            log::Level::Warn,
            "{}: DMA {what} of {count} bytes at {:#x} refused: outside the device's restricted DMA pool \
             {:#x}..{:#x} (the guest did not bounce this buffer through the pool)",
            self.label,
            addr.0,
            self.base,
            self.end
        );
    }

    fn error(&self, addr: GuestAddress, count: usize) -> GuestMemoryError {
        GuestMemoryError::IommuError(TranslateError::CannotResolve {
            iova_range: IovaRange { base: addr, length: count },
            reason: format!("outside the restricted DMA pool {:#x}..{:#x}", self.base, self.end),
        })
    }
}

/// Guest memory as a device confined to a restricted DMA pool reaches it:
/// guest-physical addresses, inside the pool only.
pub struct PoolMemory<B = GuestMemoryMmap> {
    backend: B,
    bounds: PoolBounds,
}

impl<B> std::fmt::Debug for PoolMemory<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMemory").field("bounds", &self.bounds).finish_non_exhaustive()
    }
}

impl<B> PoolMemory<B> {
    /// The memory behind the bounds (for tests and benchmarks that play the
    /// driver, which reaches all of it).
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: GuestMemoryBackend> GuestMemory for PoolMemory<B> {
    type PhysicalMemory = B;
    type Bitmap = <B::R as GuestMemoryRegion>::B;

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        self.bounds.admit(addr, count, access) && GuestMemoryBackend::check_range(&self.backend, addr, count)
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> vm_memory::guest_memory::Result<impl GuestMemorySliceIterator<'a, BS<'a, Self::Bitmap>>> {
        if !self.bounds.admit(addr, count, access) {
            return Err(self.bounds.error(addr, count));
        }
        Ok(GuestMemoryBackend::get_slices(&self.backend, addr, count))
    }
}

/// The memory to give the device model of a pool device: `mem`
/// (guest-physical memory, e.g. a clone of the VM's `GuestMemoryMmap`)
/// seen through `bounds`.
pub fn pool_memory<B: GuestMemoryBackend>(mem: B, bounds: PoolBounds) -> PoolMemory<B> {
    PoolMemory { backend: mem, bounds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemory};

    const POOL: u64 = 0x10_0000;
    const SIZE: u64 = 0x4_0000;

    fn memory() -> (PoolMemory, Arc<PoolCounters>) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        let counters = Arc::new(PoolCounters::default());
        let bounds = PoolBounds::new(POOL, SIZE, counters.clone(), "disk0").unwrap();
        (pool_memory(mem, bounds), counters)
    }

    #[test]
    fn inside_the_pool_is_guest_physical() {
        let (mem, counters) = memory();
        mem.write_obj(0xabcd_u32, GuestAddress(POOL)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(POOL)).unwrap(), 0xabcd);
        // The last byte of the pool, and an access ending exactly at its end.
        mem.write_obj(7u8, GuestAddress(POOL + SIZE - 1)).unwrap();
        let mut buf = [0u8; 16];
        mem.read_slice(&mut buf, GuestAddress(POOL + SIZE - 16)).unwrap();
        assert_eq!(buf[15], 7);
        assert_eq!(counters.refused(), 0);
        assert!(counters.inside() >= 4);
        // The backing memory saw the same bytes at the same address.
        assert_eq!(mem.backend().read_obj::<u32>(GuestAddress(POOL)).unwrap(), 0xabcd);
    }

    #[test]
    fn accesses_straddling_or_outside_the_pool_touch_nothing() {
        let (mem, counters) = memory();
        let backend = mem.backend().clone();
        backend.write_slice(&[0x55; 32], GuestAddress(POOL + SIZE - 16)).unwrap();
        backend.write_slice(&[0x55; 32], GuestAddress(POOL - 16)).unwrap();
        let cases: [(u64, usize); 6] = [
            (POOL + SIZE - 16, 32), // straddles the end
            (POOL - 16, 32),        // straddles the start
            (POOL + SIZE, 1),       // just past the end
            (POOL - 1, 1),          // just before the start
            (0, 8),                 // far below
            (u64::MAX - 3, 8),      // wraps the address space
        ];
        for (n, (addr, len)) in cases.into_iter().enumerate() {
            assert!(mem.write_slice(&vec![0xaa; len], GuestAddress(addr)).is_err(), "{addr:#x}+{len}");
            let mut buf = vec![0u8; len];
            assert!(mem.read_slice(&mut buf, GuestAddress(addr)).is_err(), "{addr:#x}+{len}");
            assert!(!mem.check_range(GuestAddress(addr), len, Permissions::Read));
            assert_eq!(counters.refused(), 3 * (n as u64 + 1));
        }
        // Not one byte written, inside or outside the pool.
        let mut buf = [0u8; 32];
        backend.read_slice(&mut buf, GuestAddress(POOL + SIZE - 16)).unwrap();
        assert_eq!(buf, [0x55; 32]);
        backend.read_slice(&mut buf, GuestAddress(POOL - 16)).unwrap();
        assert_eq!(buf, [0x55; 32]);
        assert_eq!(counters.inside(), 0);
    }

    #[test]
    fn an_empty_or_wrapping_pool_is_refused() {
        let counters = Arc::new(PoolCounters::default());
        assert!(PoolBounds::new(0x1000, 0, counters.clone(), "x").is_err());
        assert!(PoolBounds::new(u64::MAX - 0xfff, 0x2000, counters.clone(), "x").is_err());
        assert_eq!(PoolBounds::new(0x1000, 0x1000, counters, "x").unwrap().range(), (0x1000, 0x2000));
    }
}
