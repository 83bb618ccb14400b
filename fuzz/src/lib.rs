//! Shared pieces of dmavm's fuzz targets: guest addresses and lengths with
//! useful shapes, a split virtqueue written descriptor by descriptor from
//! fuzz input, and the set of guest bytes a device may write while it
//! processes that queue (the oracle's "granted ranges").
//!
//! Harness code: it unwraps its own setup (a failure there is a broken
//! harness, not a finding).

use arbitrary::Arbitrary;
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const F_NEXT: u16 = VRING_DESC_F_NEXT as u16;
pub const F_WRITE: u16 = VRING_DESC_F_WRITE as u16;
pub const F_INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// A guest address: mostly inside guest memory (where something happens),
/// sometimes at the edges where bounds checks live, sometimes anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// `n % mem_size`: anywhere in RAM, rings included.
    InRam(u32),
    /// Around the boundary between the two memory regions.
    NearSplit(i16),
    /// Just below (or past) the end of RAM.
    NearEnd(u16),
    /// Any 64-bit value.
    Raw(u64),
}

impl Addr {
    pub fn resolve(self, mem_size: u64, region_split: u64) -> u64 {
        match self {
            Addr::InRam(n) => u64::from(n) % mem_size,
            Addr::NearSplit(d) => region_split.wrapping_add_signed(i64::from(d)),
            Addr::NearEnd(d) => mem_size.wrapping_sub(u64::from(d)),
            Addr::Raw(a) => a,
        }
    }
}

/// A length: small ones make valid requests, large ones probe overflow.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Len {
    Small(u8),
    Medium(u16),
    Raw(u32),
}

impl Len {
    pub fn resolve(self) -> u32 {
        match self {
            Len::Small(n) => u32::from(n),
            Len::Medium(n) => u32::from(n),
            Len::Raw(n) => n,
        }
    }
}

/// One descriptor as the guest may write it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Desc {
    pub addr: Addr,
    pub len: Len,
    pub write: bool,
    pub next: Option<u16>,
    pub indirect: bool,
    /// Extra flag bits (reserved ones included), OR-ed in.
    pub extra_flags: u16,
}

impl Desc {
    pub fn raw(&self, mem_size: u64, region_split: u64) -> RawDescriptor {
        let mut flags = self.extra_flags & !(F_NEXT | F_WRITE | F_INDIRECT);
        if self.write {
            flags |= F_WRITE;
        }
        if self.indirect {
            flags |= F_INDIRECT;
        }
        if self.next.is_some() {
            flags |= F_NEXT;
        }
        let d = SplitDescriptor::new(
            self.addr.resolve(mem_size, region_split),
            self.len.resolve(),
            flags,
            self.next.unwrap_or(0),
        );
        RawDescriptor::from(d)
    }
}

/// The driver's side of a split ring at `base` (descriptor table, then the
/// available and used rings a page apart: the layout of both test-utils
/// drivers, whose rings the devices were activated with).
#[derive(Debug)]
pub struct Ring {
    pub base: u64,
    pub size: u16,
    pub avail_idx: u16,
}

impl Ring {
    /// Zeroes the whole descriptor table and the ring headers: every
    /// descriptor the device can reach is then one the fuzzer wrote (or a
    /// harmless zero), so the granted ranges below are complete.
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Self {
        mem.write_slice(&vec![0u8; 16 * usize::from(size)], GuestAddress(base)).unwrap();
        let r = Self { base, size, avail_idx: 0 };
        mem.write_slice(&vec![0u8; 6 + 2 * usize::from(size)], GuestAddress(r.avail())).unwrap();
        mem.write_slice(&vec![0u8; 6 + 8 * usize::from(size)], GuestAddress(r.used())).unwrap();
        r
    }

    pub fn avail(&self) -> u64 {
        self.base + 0x1000
    }

    pub fn used(&self) -> u64 {
        self.base + 0x2000
    }

    pub fn used_ring(&self) -> (u64, u64) {
        (self.used(), 6 + 8 * u64::from(self.size))
    }

    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    pub fn write_desc(&self, mem: &GuestMemoryMmap, index: u16, d: RawDescriptor) {
        let index = index % self.size;
        mem.write_obj(d, GuestAddress(self.base + 16 * u64::from(index))).unwrap();
    }

    /// Puts `head` in the next available slot and bumps the index by
    /// `bump` (1 for an honest driver; anything for a hostile one).
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16, bump: u16) {
        let slot = self.avail() + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(bump);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2)).unwrap();
    }

    /// `used_event` (`VIRTIO_RING_F_EVENT_IDX`).
    pub fn set_used_event(&self, mem: &GuestMemoryMmap, v: u16) {
        mem.write_obj(v, GuestAddress(self.avail() + 4 + 2 * u64::from(self.size))).unwrap();
    }

    /// Every guest range the device may write while it processes this
    /// ring as it is in memory now: the used ring, and every
    /// device-writable descriptor of the table and of each indirect table
    /// the table points to. Clipped to `[0, mem_size)`.
    pub fn granted(&self, mem: &GuestMemoryMmap, mem_size: u64) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        let (u, ul) = self.used_ring();
        push_clipped(&mut out, u, ul, mem_size);
        for i in 0..self.size {
            let d = read_desc(mem, self.base + 16 * u64::from(i));
            grant(&mut out, &d, mem_size);
            if d.flags() & F_INDIRECT != 0 {
                // The device reads at most len / 16 entries of it.
                let n = u64::from(d.len() / 16).min(1 << 16);
                for j in 0..n {
                    let Some(a) = d.addr().0.checked_add(16 * j) else { break };
                    if a.checked_add(16).is_none_or(|e| e > mem_size) {
                        break;
                    }
                    grant(&mut out, &read_desc(mem, a), mem_size);
                }
            }
        }
        out
    }
}

fn read_desc(mem: &GuestMemoryMmap, at: u64) -> SplitDescriptor {
    let raw: RawDescriptor = mem.read_obj(GuestAddress(at)).unwrap();
    SplitDescriptor::from(raw)
}

fn grant(out: &mut Vec<(u64, usize)>, d: &SplitDescriptor, mem_size: u64) {
    if d.flags() & F_WRITE != 0 {
        push_clipped(out, d.addr().0, u64::from(d.len()), mem_size);
    }
}

/// Adds `[start, start + len)` ∩ `[0, mem_size)` to `out`.
pub fn push_clipped(out: &mut Vec<(u64, usize)>, start: u64, len: u64, mem_size: u64) {
    let end = start.saturating_add(len).min(mem_size);
    if start < end {
        out.push((start, (end - start) as usize));
    }
}

/// A snapshot of all of guest memory, compared after the device ran.
#[derive(Debug)]
pub struct Snapshot(Vec<u8>);

impl Snapshot {
    pub fn new(mem: &GuestMemoryMmap, mem_size: u64) -> Self {
        let mut v = vec![0u8; mem_size as usize];
        mem.read_slice(&mut v, GuestAddress(0)).unwrap();
        Self(v)
    }

    /// Panics (the fuzz finding) if a byte outside `granted` changed.
    pub fn assert_only_changed(&self, mem: &GuestMemoryMmap, granted: &[(u64, usize)]) {
        let mut now = vec![0u8; self.0.len()];
        mem.read_slice(&mut now, GuestAddress(0)).unwrap();
        if now == self.0 {
            return;
        }
        let mut ok = vec![false; now.len()];
        for &(s, l) in granted {
            ok[s as usize..s as usize + l].fill(true);
        }
        for (a, (b, n)) in self.0.iter().zip(&now).enumerate() {
            assert!(
                b == n || ok[a],
                "guest byte {a:#x} changed from {b:#04x} to {n:#04x} outside the granted ranges"
            );
        }
    }
}

/// The virtio device behind a fuzzed transport.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum DeviceChoice {
    Rng,
    Block { read_only: bool },
}

/// Builds the device; a block device gets a fresh 16-sector temporary
/// file, returned so that it lives as long as the device.
pub fn make_device(
    choice: DeviceChoice,
) -> (Box<dyn dmavm_devices::virtio::VirtioDevice<GuestMemoryMmap>>, Option<vmm_sys_util::tempfile::TempFile>)
{
    use dmavm_devices::virtio::{Block, BlockConfig, Rng};
    use std::io::Write;
    match choice {
        DeviceChoice::Rng => (Box::new(Rng::<GuestMemoryMmap>::new()), None),
        DeviceChoice::Block { read_only } => {
            let file = vmm_sys_util::tempfile::TempFile::new().unwrap();
            file.as_file().write_all(&[0x5a; 16 * 512]).unwrap();
            let config =
                BlockConfig { file: file.as_file().try_clone().unwrap(), read_only, id: "fuzz".into() };
            (Box::new(Block::<GuestMemoryMmap>::new(config).unwrap()), Some(file))
        }
    }
}

/// The width of a register access: the usual ones, or any up to 16 bytes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Width {
    B1,
    B2,
    B4,
    B8,
    Odd(u8),
}

impl Width {
    pub fn len(self) -> usize {
        match self {
            Width::B1 => 1,
            Width::B2 => 2,
            Width::B4 => 4,
            Width::B8 => 8,
            Width::Odd(n) => usize::from(n % 17),
        }
    }
}
