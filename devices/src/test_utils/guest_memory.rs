//! Guest memory for device tests: two regions filled with a canary
//! pattern, a snapshot that proves which bytes a request changed, and a
//! write-protected view standing in for an IOMMU mapping.

use std::sync::Arc;

use vm_memory::bitmap::BS;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{
    Bytes, GuestAddress, GuestMemory, GuestMemoryError, GuestMemoryMmap, GuestMemoryResult, Permissions,
};

/// Guest memory size: two adjacent regions of half this each, so buffers
/// can straddle a region boundary (at [`REGION_SPLIT`]).
pub const MEM_SIZE: usize = 0x10_0000;
pub const REGION_SPLIT: u64 = 0x8_0000;

/// The byte every guest address holds before a test runs.
pub fn canary(addr: usize) -> u8 {
    (addr % 251) as u8 ^ 0xa5
}

/// `len` bytes of `mem` at `addr`.
pub fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// Writes `data` into `mem` at `addr`.
pub fn write(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) {
    mem.write_slice(data, GuestAddress(addr)).unwrap();
}

/// Guest memory (two regions) filled with the canary pattern.
pub fn memory() -> Arc<GuestMemoryMmap> {
    filled_memory(MEM_SIZE, REGION_SPLIT, canary)
}

/// `size` bytes of guest memory in two regions of half each, the second at
/// `split`, every byte at address `a` holding `pattern(a)`.
pub fn filled_memory(size: usize, split: u64, pattern: fn(usize) -> u8) -> Arc<GuestMemoryMmap> {
    let half = size / 2;
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), half), (GuestAddress(split), half)]).unwrap();
    let bytes: Vec<u8> = (0..size).map(pattern).collect();
    mem.write_slice(&bytes, GuestAddress(0)).unwrap();
    Arc::new(mem)
}

/// A snapshot of all of guest memory.
#[derive(Debug)]
pub struct MemCheck {
    before: Vec<u8>,
}

impl MemCheck {
    pub fn new(mem: &GuestMemoryMmap) -> Self {
        let mut before = vec![0u8; MEM_SIZE];
        mem.read_slice(&mut before, GuestAddress(0)).unwrap();
        Self { before }
    }

    /// Asserts that no byte outside `allowed` (`(addr, len)` ranges) changed.
    pub fn assert_only_changed(&self, mem: &GuestMemoryMmap, allowed: &[(u64, usize)]) {
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
    pub fn differs(&self, addr: u64, data: &[u8]) -> usize {
        let start = addr as usize;
        self.before[start..start + data.len()].iter().zip(data).filter(|(a, b)| a != b).count()
    }
}

/// Guest memory seen through a stand-in for an IOMMU: the device may read
/// `window` but not write it, as with an IOVA range mapped read-only. It
/// also shows that the devices work on any `GuestMemory`, not just
/// `GuestMemoryMmap`.
#[derive(Debug)]
pub struct WriteProtected {
    /// The memory behind the view.
    pub inner: Arc<GuestMemoryMmap>,
    /// `[start, end)` the device may not write.
    pub window: (u64, u64),
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
