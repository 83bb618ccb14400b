//! Shared pieces of dmavm's fuzz targets: guest addresses and lengths with
//! useful shapes, a split virtqueue written descriptor by descriptor from
//! fuzz input, and the set of guest bytes a device may write while it
//! processes that queue (the oracle's "granted ranges").
//!
//! Harness code: it unwraps its own setup (a failure there is a broken
//! harness, not a finding).

use arbitrary::Arbitrary;
use dmavm_devices::virtio::VirtioDevice;
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
    pub fn granted(&self, mem: &GuestMemoryMmap, mem_size: u64) -> Grants {
        let mut g = Grants::default();
        let (u, ul) = self.used_ring();
        push_clipped(&mut g.writable, u, ul, mem_size);
        push_clipped(&mut g.tables, self.base, 16 * u64::from(self.size), mem_size);
        for d in read_descs(mem, self.base, u64::from(self.size), mem_size) {
            grant(&mut g.writable, &d, mem_size);
            if d.flags() & F_INDIRECT != 0 {
                // The device reads at most len / 16 entries of it.
                let n = u64::from(d.len() / 16);
                push_clipped(&mut g.tables, d.addr().0, 16 * n, mem_size);
                for e in read_descs(mem, d.addr().0, n, mem_size) {
                    grant(&mut g.writable, &e, mem_size);
                }
            }
        }
        g
    }
}

/// What a device may write while it processes some rings: the ranges,
/// and the descriptor tables they were read from.
#[derive(Debug, Default)]
pub struct Grants {
    writable: Vec<(u64, usize)>,
    tables: Vec<(u64, usize)>,
}

impl Grants {
    pub fn extend(&mut self, other: Grants) {
        self.writable.extend(other.writable);
        self.tables.extend(other.tables);
    }

    /// The ranges the device may write, or `None` if one of them overlaps
    /// a descriptor table: the device's own writes (a status byte landing
    /// in a descriptor's length, say) then change what it may write next,
    /// so no set of ranges fixed before the run bounds it, and the run
    /// gets only the no-panic oracle. A driver doing that corrupts its own
    /// rings; what the device must still not do is panic or write where
    /// the descriptors it read at the time did not allow, which the
    /// fuzzer checks on every other input.
    pub fn ranges(&self) -> Option<&[(u64, usize)]> {
        let overlap = |(a, al): (u64, usize), (b, bl): (u64, usize)| a < b + bl as u64 && b < a + al as u64;
        let self_modifying = self.writable.iter().any(|&w| self.tables.iter().any(|&t| overlap(w, t)));
        (!self_modifying).then_some(&self.writable[..])
    }
}

/// The `count` descriptors of a table at `at`, as many as lie wholly in
/// `[0, mem_size)`, read with one copy (a read per descriptor made the
/// oracle cost more than the device).
fn read_descs(mem: &GuestMemoryMmap, at: u64, count: u64, mem_size: u64) -> Vec<SplitDescriptor> {
    let room = mem_size.saturating_sub(at) / 16;
    let n = count.min(room) as usize;
    if n == 0 {
        return Vec::new();
    }
    let mut bytes = vec![0u8; 16 * n];
    mem.read_slice(&mut bytes, GuestAddress(at)).unwrap();
    bytes
        .chunks_exact(16)
        .map(|c| {
            // The split descriptor's little-endian layout (virtio 1.2, 2.7.5).
            let le = |r: std::ops::Range<usize>| {
                let mut b = [0u8; 8];
                b[..r.len()].copy_from_slice(&c[r]);
                u64::from_le_bytes(b)
            };
            SplitDescriptor::new(le(0..8), le(8..12) as u32, le(12..14) as u16, le(14..16) as u16)
        })
        .collect()
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
///
/// The comparison works on whole ranges (one `memcmp` per stretch between
/// granted ranges) and never byte by byte: the fuzz build instruments
/// every comparison in this crate too, and a per-byte loop over guest
/// memory cost more than everything the device did.
#[derive(Debug)]
pub struct Snapshot(Vec<u8>);

impl Snapshot {
    pub fn new(mem: &GuestMemoryMmap, mem_size: u64) -> Self {
        let mut v = spare_buffer(mem_size as usize);
        mem.read_slice(&mut v, GuestAddress(0)).unwrap();
        Self(v)
    }

    /// Panics (the fuzz finding) if a byte outside `granted` changed.
    pub fn assert_only_changed(&self, mem: &GuestMemoryMmap, granted: &[(u64, usize)]) {
        let mut now = spare_buffer(self.0.len());
        mem.read_slice(&mut now, GuestAddress(0)).unwrap();
        if now == self.0 {
            return_buffer(now);
            return;
        }
        let mut ranges: Vec<(usize, usize)> =
            granted.iter().map(|&(s, l)| (s as usize, (s as usize).saturating_add(l))).collect();
        ranges.sort_unstable();
        let mut from = 0;
        for (start, end) in ranges {
            if start > from {
                self.assert_same(&now, from, start);
            }
            from = from.max(end);
        }
        if from < now.len() {
            self.assert_same(&now, from, now.len());
        }
        return_buffer(now);
    }

    /// [`Self::assert_only_changed`] with `grants`, when they bound the
    /// run (see [`Grants::ranges`]).
    pub fn assert_within(&self, mem: &GuestMemoryMmap, grants: &Grants) {
        if let Some(ranges) = grants.ranges() {
            self.assert_only_changed(mem, ranges);
        }
    }

    fn assert_same(&self, now: &[u8], from: usize, to: usize) {
        let (was, is) = (&self.0[from..to], &now[from..to]);
        if was != is {
            let i = was.iter().zip(is).position(|(b, n)| b != n).unwrap_or(0);
            panic!(
                "guest byte {:#x} changed from {:#04x} to {:#04x} outside the granted ranges",
                from + i,
                was[i],
                is[i]
            );
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        return_buffer(std::mem::take(&mut self.0));
    }
}

// Snapshot buffers are reused: a fresh 256 KiB allocation is an mmap, and
// faulting its pages in again on every queue run was a third of a run.
thread_local! {
    static SPARE_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn spare_buffer(len: usize) -> Vec<u8> {
    let mut v = SPARE_BUFFERS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.resize(len, 0);
    v
}

fn return_buffer(v: Vec<u8>) {
    SPARE_BUFFERS.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < 4 && v.capacity() > 0 {
            spare.push(v);
        }
    });
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

/// The fuzzed guest's memory: two regions of 128 KiB. Small on purpose:
/// every queue run snapshots and compares all of it, and each input gets
/// a fresh copy, so its size sets the targets' speed.
pub const MEM_SIZE: u64 = 0x4_0000;
pub const REGION_SPLIT: u64 = 0x2_0000;
/// Request queue and event queue rings, request buffers, event buffers.
pub const IOMMU_REQ_RINGS: u64 = 0x0;
pub const IOMMU_EVT_RINGS: u64 = 0x3000;
pub const IOMMU_REQ_READ: u64 = 0x1_0000;
pub const IOMMU_REQ_WRITE: u64 = 0x1_8000;
pub const IOMMU_EVENT_BUFS: u64 = 0x1_c000;

/// Guest memory of `size` bytes in two regions split at `split`, filled
/// with a canary pattern. The mapping is reused from the last input once
/// nothing else holds it (refilled, never faulted in again: a fresh
/// mapping per input cost an eighth of a run).
pub fn canary_memory(size: u64, split: u64) -> std::sync::Arc<GuestMemoryMmap> {
    use std::sync::Arc;
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, u64, Arc<GuestMemoryMmap>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let pattern = PATTERN.get_or_init(|| (0..1usize << 20).map(|a| (a % 251) as u8 ^ 0x5a).collect());
    let mem = LAST.with(|last| match &*last.borrow() {
        Some((s, p, m)) if (*s, *p) == (size, split) && Arc::strong_count(m) == 1 => Some(m.clone()),
        _ => None,
    });
    let mem = mem.unwrap_or_else(|| {
        let m = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&[
                (GuestAddress(0), split as usize),
                (GuestAddress(split), (size - split) as usize),
            ])
            .unwrap(),
        );
        LAST.with(|last| *last.borrow_mut() = Some((size, split, m.clone())));
        m
    });
    mem.write_slice(&pattern[..size as usize], GuestAddress(0)).unwrap();
    mem
}

impl Ring {
    /// The queue as the transport hands it to the device.
    pub fn queue(&self) -> virtio_queue::Queue {
        use virtio_queue::QueueT;
        let mut q = virtio_queue::Queue::new(256).unwrap();
        q.set_size(self.size);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(self.base);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(self.avail());
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(self.used());
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        q
    }
}

/// A virtio-iommu with both queues activated over [`canary_memory`].
pub struct IommuRig {
    pub mem: std::sync::Arc<GuestMemoryMmap>,
    pub dev: dmavm_iommu::VirtioIommu<GuestMemoryMmap>,
    pub req: Ring,
    pub evt: Ring,
    pub acked: u64,
    pub next_desc: u16,
}

impl IommuRig {
    pub fn new(
        config: dmavm_iommu::IommuConfig,
        endpoints: &[u32],
        reserved: &[(u64, u64)],
        acked: u64,
    ) -> Self {
        let mem = canary_memory(MEM_SIZE, REGION_SPLIT);
        let dev = dmavm_iommu::VirtioIommu::new(config, endpoints, reserved).unwrap();
        let req = Ring::new(&mem, IOMMU_REQ_RINGS, 256);
        let evt = Ring::new(&mem, IOMMU_EVT_RINGS, 256);
        let mut rig = Self { mem, dev, req, evt, acked, next_desc: 0 };
        rig.activate();
        rig
    }

    /// (Re)activates with fresh rings (after a reset).
    pub fn activate(&mut self) {
        use dmavm_devices::virtio::{Activation, VirtioDevice};
        self.req = Ring::new(&self.mem, IOMMU_REQ_RINGS, 256);
        self.evt = Ring::new(&self.mem, IOMMU_EVT_RINGS, 256);
        self.next_desc = 0;
        self.dev
            .activate(Activation {
                mem: self.mem.clone(),
                queues: vec![self.req.queue(), self.evt.queue()],
                acked_features: self.acked,
                interrupt: std::sync::Arc::new(dmavm_devices::test_utils::interrupts::Interrupts::default()),
            })
            .unwrap();
    }

    /// Writes `bufs` as a chain (in the descriptor table, or in an
    /// indirect table at `indirect`); returns its head.
    pub fn chain(&mut self, bufs: &[(u64, u32, u16)], indirect: Option<u64>) -> u16 {
        let mem = self.mem.clone();
        let head = self.next_desc;
        match indirect {
            Some(table) => {
                for (i, &(a, l, f)) in bufs.iter().enumerate() {
                    let (f, n) = if i + 1 < bufs.len() { (f | F_NEXT, i as u16 + 1) } else { (f, 0) };
                    let d = RawDescriptor::from(SplitDescriptor::new(a, l, f, n));
                    let _ = mem.write_obj(d, GuestAddress(table.wrapping_add(16 * i as u64)));
                }
                let d = SplitDescriptor::new(table, 16 * bufs.len() as u32, F_INDIRECT, 0);
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

    /// Runs both queues; checks that no byte outside the used rings and
    /// the device-writable descriptors changed.
    pub fn process(&mut self) {
        use dmavm_devices::virtio::VirtioDevice;
        let (grants, before) = oracle(|| {
            let mut grants = self.req.granted(&self.mem, MEM_SIZE);
            grants.extend(self.evt.granted(&self.mem, MEM_SIZE));
            (grants, Snapshot::new(&self.mem, MEM_SIZE))
        });
        // Errors are the device's answer to a broken ring; only panics and
        // stray writes are findings.
        let _ = self.dev.process_queue(0);
        let _ = self.dev.process_queue(1);
        oracle(|| before.assert_within(&self.mem, &grants));
    }

    /// Sends `request` with a 4-byte tail, the honest way; returns the
    /// status byte (0xee if the device wrote nothing there).
    pub fn status(&mut self, request: &[u8]) -> u8 {
        let mem = self.mem.clone();
        mem.write_slice(request, GuestAddress(IOMMU_REQ_READ)).unwrap();
        mem.write_slice(&[0xee; 4], GuestAddress(IOMMU_REQ_WRITE)).unwrap();
        let head =
            self.chain(&[(IOMMU_REQ_READ, request.len() as u32, 0), (IOMMU_REQ_WRITE, 4, F_WRITE)], None);
        self.req.publish(&mem, head, 1);
        self.process();
        mem.read_obj(GuestAddress(IOMMU_REQ_WRITE)).unwrap()
    }

    /// Makes `count` event buffers of `len` bytes available and runs.
    pub fn post_events(&mut self, count: u64, len: u32) {
        let mem = self.mem.clone();
        for _ in 0..count {
            let at = IOMMU_EVENT_BUFS + 0x40 * (u64::from(self.evt.avail_idx) % 64);
            let d = SplitDescriptor::new(at, len, F_WRITE, 0);
            let head = self.evt.avail_idx % 256;
            self.evt.write_desc(&mem, head, RawDescriptor::from(d));
            self.evt.publish(&mem, head, 1);
        }
        self.process();
    }
}

/// Runs one input and fails it (the finding "an input a guest or user can
/// make the VMM spend too long on") if it took more than the budget of
/// CPU time on this thread: 100 ms, or `DMAVM_FUZZ_CPU_MS`. CPU time, not
/// wall-clock, so a busy machine does not make an input slow; libFuzzer's
/// `-timeout` still catches waits. The oracle's own checks ([`oracle`])
/// are not counted: the budget is for what the VMM does.
pub fn within_cpu_budget(run: impl FnOnce()) {
    static BUDGET_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let budget_ms = *BUDGET_MS
        .get_or_init(|| std::env::var("DMAVM_FUZZ_CPU_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(100));
    ORACLE_NS.set(0);
    let start = thread_cpu_ns();
    run();
    let spent_ms = thread_cpu_ns().saturating_sub(start).saturating_sub(ORACLE_NS.get()) / 1_000_000;
    assert!(spent_ms <= budget_ms, "one input took {spent_ms} ms of CPU (budget {budget_ms} ms)");
}

thread_local! {
    /// CPU time this thread spent in [`oracle`] since the input started.
    static ORACLE_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs a check of the harness's own (snapshots of guest memory, the
/// grants computed from the rings, the comparison), whose CPU time
/// [`within_cpu_budget`] leaves out: with a check around every device
/// call, an input of many calls would otherwise fail the budget on the
/// oracle's time, not the device's.
pub fn oracle<T>(check: impl FnOnce() -> T) -> T {
    let start = thread_cpu_ns();
    let out = check();
    ORACLE_NS.set(ORACLE_NS.get() + thread_cpu_ns().saturating_sub(start));
    out
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a hostile driver does to a device's split rings, for the chain
/// targets of devices other than virtio-blk. `queue` picks the ring
/// (modulo the device's number of queues).
#[derive(Arbitrary, Debug)]
pub enum RingOp {
    Desc {
        queue: u8,
        index: u16,
        desc: Desc,
    },
    /// Up to 32 descriptors of an indirect table at `at`.
    Indirect {
        at: Addr,
        entries: Vec<Desc>,
    },
    Blob {
        at: Addr,
        bytes: Vec<u8>,
    },
    Publish {
        queue: u8,
        head: u16,
        bump: u8,
    },
    UsedEvent {
        queue: u8,
        value: u16,
    },
}

/// The input of the chain targets built on [`QueueRig`]: the queues'
/// size, the features the driver accepts (of those offered), and what it
/// does, in order (the first [`ChainProgram::MAX_OPS`] steps).
#[derive(Arbitrary, Debug)]
pub struct ChainProgram<Op> {
    pub size_log2: u8,
    pub features: u64,
    pub ops: Vec<Op>,
}

impl<Op> ChainProgram<Op> {
    pub const MAX_OPS: usize = 64;

    pub fn steps(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().take(Self::MAX_OPS)
    }
}

/// The rings of a device with one to three queues over
/// [`canary_memory`]: queue `i`'s at `0x3000 * i`, each with its
/// descriptor table zeroed.
pub struct QueueRig {
    pub mem: std::sync::Arc<GuestMemoryMmap>,
    pub rings: Vec<Ring>,
}

impl QueueRig {
    /// `queues` queues of `1 << (size_log2 % 9)` entries: 1 to 256.
    pub fn new(size_log2: u8, queues: u8) -> Self {
        let mem = canary_memory(MEM_SIZE, REGION_SPLIT);
        let size = 1u16 << (size_log2 % 9);
        let rings = (0..u64::from(queues.clamp(1, 3))).map(|i| Ring::new(&mem, 0x3000 * i, size)).collect();
        Self { mem, rings }
    }

    /// Activates `device` over these rings, as a transport would after
    /// the driver accepted `features` (of those offered) and VERSION_1. A
    /// refused activation is the device's answer to bad rings.
    pub fn activate(&self, device: &mut dyn VirtioDevice<GuestMemoryMmap>, features: u64) {
        let _ = device.activate(dmavm_devices::virtio::Activation {
            mem: self.mem.clone(),
            queues: self.rings.iter().map(Ring::queue).collect(),
            acked_features: (features & device.device_features()) | dmavm_devices::virtio::VIRTIO_F_VERSION_1,
            interrupt: std::sync::Arc::new(dmavm_devices::test_utils::interrupts::Interrupts::default()),
        });
    }

    /// A device reset by the driver, then activated again with `features`.
    pub fn reset_and_activate(&self, device: &mut dyn VirtioDevice<GuestMemoryMmap>, features: u64) {
        device.reset();
        self.activate(device, features);
    }

    pub fn apply(&mut self, op: &RingOp) {
        let mem = self.mem.clone();
        let n = self.rings.len();
        let ring = |q: u8| usize::from(q) % n;
        match op {
            RingOp::Desc { queue, index, desc } => {
                self.rings[ring(*queue)].write_desc(&mem, *index, desc.raw(MEM_SIZE, REGION_SPLIT))
            }
            RingOp::Indirect { at, entries } => {
                let at = at.resolve(MEM_SIZE, REGION_SPLIT);
                for (i, d) in entries.iter().take(32).enumerate() {
                    let _ = mem.write_obj(
                        d.raw(MEM_SIZE, REGION_SPLIT),
                        GuestAddress(at.wrapping_add(16 * i as u64)),
                    );
                }
            }
            RingOp::Blob { at, bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(at.resolve(MEM_SIZE, REGION_SPLIT)));
            }
            RingOp::Publish { queue, head, bump } => {
                self.rings[ring(*queue)].publish(&mem, *head, u16::from(*bump))
            }
            RingOp::UsedEvent { queue, value } => self.rings[ring(*queue)].set_used_event(&mem, *value),
        }
    }

    /// Runs `device_work` and panics if it changed a guest byte outside
    /// every queue's used ring and device-writable descriptors.
    pub fn checked<T>(&self, device_work: impl FnOnce() -> T) -> T {
        let (grants, before) = oracle(|| {
            let mut grants = Grants::default();
            for ring in &self.rings {
                grants.extend(ring.granted(&self.mem, MEM_SIZE));
            }
            (grants, Snapshot::new(&self.mem, MEM_SIZE))
        });
        let out = device_work();
        oracle(|| before.assert_within(&self.mem, &grants));
        out
    }
}
