//! The guest driver's side of one virtio-blk queue, and the measuring loop.
//!
//! Set-up: 64 MiB of guest memory, one split virtqueue of 256 entries laid
//! out in it. Each round the "driver" writes `depth` read requests
//! (`VIRTIO_BLK_T_IN`; header, data and status buffers) at sequential disk
//! offsets that wrap at the end of the disk, publishes them with one store
//! of the available index, calls `process_queue(0)` as the notification
//! would, and reaps the used ring, checking every used length and status
//! byte. Two layouts: indirect descriptor tables, one ring entry per
//! request, 128 requests per round (what a Linux guest does once
//! `VIRTIO_RING_F_INDIRECT_DESC` is negotiated), and direct 3-descriptor
//! chains, 85 per round (all a 256-entry table holds).
//!
//! The driver writes guest-physical memory; the addresses it gives the
//! device (queue addresses and descriptors) are guest-physical plus
//! `iova`, the offset at which a translated benchmark maps guest memory.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::virtio::{
    Activation, Block, BlockConfig, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

use super::backing::DISK_SIZE;
use super::Result;

/// Guest memory size.
pub const MEM_SIZE: usize = 64 << 20;
const QUEUE_SIZE: u16 = 256;

// Guest memory layout.
const DESC_TABLE: u64 = 0x0;
const AVAIL_RING: u64 = 0x1000;
const USED_RING: u64 = 0x2000;
/// 16-byte request headers, one per slot.
const HEADERS: u64 = 0x1_0000;
/// Status bytes, one per slot.
const STATUS: u64 = 0x2_0000;
/// Indirect tables, 48 bytes (3 descriptors) per slot.
const INDIRECT_TABLES: u64 = 0x3_0000;
/// Data buffers, `size` bytes per slot.
const DATA: u64 = 0x10_0000;
/// Guest memory above what the driver uses (at most 128 slots of 64 KiB
/// from `DATA`): free for other rings, e.g. an IOMMU's.
pub const FREE_FROM: u64 = 0x100_0000;

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;
const VIRTIO_BLK_T_IN: u32 = 0;

/// How requests are laid out in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One ring entry per request pointing at a 3-entry indirect table.
    Indirect,
    /// Three chained descriptors per request in the ring's table.
    Direct,
}

impl Layout {
    /// Requests per round.
    pub fn depth(self) -> u16 {
        match self {
            Layout::Indirect => 128,
            Layout::Direct => QUEUE_SIZE / 3,
        }
    }

    /// For the report.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Indirect => "indirect",
            Layout::Direct => "3-descriptor chains",
        }
    }
}

/// Counts interrupts.
#[derive(Debug, Default)]
struct Interrupts(AtomicUsize);

impl VirtioInterrupt for Interrupts {
    fn trigger(&self, _kind: InterruptKind) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn put_desc(mem: &GuestMemoryMmap, at: u64, addr: u64, len: u32, flags: u16, next: u16) -> Result<()> {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write_slice(&d, GuestAddress(at))?;
    Ok(())
}

fn put_u16(mem: &GuestMemoryMmap, at: u64, v: u16) -> Result<()> {
    mem.write_obj(v.to_le(), GuestAddress(at))?;
    Ok(())
}

fn get_u16(mem: &GuestMemoryMmap, at: u64) -> Result<u16> {
    Ok(u16::from_le(mem.read_obj(GuestAddress(at))?))
}

/// The driver side of one queue serving `depth` read requests of `size`
/// bytes at a time.
struct Driver {
    mem: Arc<GuestMemoryMmap>,
    iova: u64,
    layout: Layout,
    size: u32,
    depth: u16,
    /// The head descriptor of each request slot.
    heads: Vec<u16>,
    avail_idx: u16,
    used_idx: u16,
    /// Next disk offset to read.
    offset: u64,
}

impl Driver {
    /// Writes the descriptors of every slot once (they never change; each
    /// round only rewrites the headers' sectors and the available ring).
    fn new(mem: Arc<GuestMemoryMmap>, iova: u64, layout: Layout, size: u32) -> Result<Self> {
        let depth = layout.depth();
        let mut heads = Vec::with_capacity(usize::from(depth));
        for slot in 0..depth {
            let s = u64::from(slot);
            let header = HEADERS + 16 * s;
            let data = DATA + u64::from(size) * s;
            let status = STATUS + s;
            let (h, d, st) = (header + iova, data + iova, status + iova);
            match layout {
                Layout::Indirect => {
                    let table = INDIRECT_TABLES + 48 * s;
                    put_desc(&mem, table, h, 16, VRING_DESC_F_NEXT, 1)?;
                    put_desc(&mem, table + 16, d, size, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2)?;
                    put_desc(&mem, table + 32, st, 1, VRING_DESC_F_WRITE, 0)?;
                    put_desc(&mem, DESC_TABLE + 16 * s, table + iova, 48, VRING_DESC_F_INDIRECT, 0)?;
                    heads.push(slot);
                }
                Layout::Direct => {
                    let first = 3 * slot;
                    let at = DESC_TABLE + 16 * u64::from(first);
                    put_desc(&mem, at, h, 16, VRING_DESC_F_NEXT, first + 1)?;
                    put_desc(&mem, at + 16, d, size, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, first + 2)?;
                    put_desc(&mem, at + 32, st, 1, VRING_DESC_F_WRITE, 0)?;
                    heads.push(first);
                }
            }
            // Request type IN, reserved 0; the sector is written per round.
            mem.write_obj(VIRTIO_BLK_T_IN.to_le(), GuestAddress(header))?;
            mem.write_obj(0u32, GuestAddress(header + 4))?;
        }
        for at in [AVAIL_RING, AVAIL_RING + 2, USED_RING, USED_RING + 2] {
            put_u16(&mem, at, 0)?;
        }
        // used_event and avail_event.
        put_u16(&mem, AVAIL_RING + 4 + 2 * u64::from(QUEUE_SIZE), 0)?;
        put_u16(&mem, USED_RING + 4 + 8 * u64::from(QUEUE_SIZE), 0)?;
        Ok(Self { mem, iova, layout, size, depth, heads, avail_idx: 0, used_idx: 0, offset: 0 })
    }

    fn queue(&self) -> Result<Queue> {
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let mut q = Queue::new(QUEUE_SIZE)?;
        q.set_size(QUEUE_SIZE);
        let (lo, hi) = split(DESC_TABLE + self.iova);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(AVAIL_RING + self.iova);
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(USED_RING + self.iova);
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        Ok(q)
    }

    /// Makes `depth` requests available with one store of the index.
    fn submit(&mut self) -> Result<()> {
        let mem = &*self.mem;
        for slot in 0..self.depth {
            let sector = self.offset / 512;
            self.offset = (self.offset + u64::from(self.size)) % DISK_SIZE;
            mem.write_obj(sector.to_le(), GuestAddress(HEADERS + 16 * u64::from(slot) + 8))?;
            let entry = self.avail_idx.wrapping_add(slot) % QUEUE_SIZE;
            put_u16(mem, AVAIL_RING + 4 + 2 * u64::from(entry), self.heads[usize::from(slot)])?;
        }
        self.avail_idx = self.avail_idx.wrapping_add(self.depth);
        std::sync::atomic::fence(Ordering::Release);
        put_u16(mem, AVAIL_RING + 2, self.avail_idx)
    }

    /// Reaps every used entry, checking it; returns how many there were.
    fn reap(&mut self) -> Result<u16> {
        let mem = &*self.mem;
        let device_idx = get_u16(mem, USED_RING + 2)?;
        std::sync::atomic::fence(Ordering::Acquire);
        let n = device_idx.wrapping_sub(self.used_idx);
        for _ in 0..n {
            let at = USED_RING + 4 + 8 * u64::from(self.used_idx % QUEUE_SIZE);
            let id: u32 = u32::from_le(mem.read_obj(GuestAddress(at))?);
            let len: u32 = u32::from_le(mem.read_obj(GuestAddress(at + 4))?);
            let slot = match self.layout {
                Layout::Indirect => id,
                Layout::Direct => id / 3,
            };
            let status: u8 = mem.read_obj(GuestAddress(STATUS + u64::from(slot)))?;
            if len != self.size + 1 || status != 0 {
                return Err(format!("request in slot {slot}: used length {len}, status {status}").into());
            }
            self.used_idx = self.used_idx.wrapping_add(1);
        }
        // Ask for an interrupt at the next used entry, as Linux does when it
        // re-enables callbacks.
        put_u16(mem, AVAIL_RING + 4 + 2 * u64::from(QUEUE_SIZE), self.used_idx)?;
        Ok(n)
    }

    /// Checks that slot 0 holds what the file holds at `offset`.
    fn verify_slot0(&self, offset: u64) -> Result<()> {
        let mut buf = vec![0u8; self.size as usize];
        self.mem.read_slice(&mut buf, GuestAddress(DATA))?;
        for (i, word) in buf.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let want = offset + 8 * i as u64;
            if u64::from_le_bytes(w) != want {
                return Err(format!("data mismatch at disk offset {want}").into());
            }
        }
        Ok(())
    }
}

/// One case's result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Requests completed while measuring.
    pub requests: u64,
    /// Rounds (notifications) while measuring.
    pub rounds: u64,
    /// Interrupts the device raised while measuring.
    pub interrupts: usize,
    /// How long the measurement took.
    pub elapsed: Duration,
}

impl Outcome {
    /// A Markdown row: size, layout, depth, requests/s, MiB/s, ns/request,
    /// interrupts per notification, then `extra` cells.
    pub fn row(&self, layout: Layout, size: u32, extra: &[String]) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rps = self.requests as f64 / secs;
        let mibs = rps * f64::from(size) / f64::from(1u32 << 20);
        let ns = self.elapsed.as_nanos() as f64 / self.requests as f64;
        let irq_per_round = self.interrupts as f64 / self.rounds as f64;
        let mut row = format!(
            "| {} KiB | {} | {} | {rps:.0} | {mibs:.0} | {ns:.0} | {irq_per_round:.2} |",
            size / 1024,
            layout.describe(),
            layout.depth(),
        );
        for e in extra {
            row.push_str(&format!(" {e} |"));
        }
        row
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// How the device model reaches the driver's memory.
pub struct Memory<M> {
    /// The driver's view: guest-physical memory.
    pub driver: Arc<GuestMemoryMmap>,
    /// The device model's view: the same memory, or the same seen through
    /// an IOMMU.
    pub device: Arc<M>,
    /// Where guest-physical address 0 is in the device's view.
    pub iova: u64,
    /// Features acked besides the ring features (`ACCESS_PLATFORM` for a
    /// translated device, as its transport would have negotiated it).
    pub extra_features: u64,
}

impl<M> std::fmt::Debug for Memory<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("iova", &format_args!("{:#x}", self.iova))
            .field("extra_features", &format_args!("{:#x}", self.extra_features))
            .finish_non_exhaustive()
    }
}

impl Memory<GuestMemoryMmap> {
    /// Fresh guest memory that the device reaches directly.
    pub fn direct() -> Result<Self> {
        let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])?);
        Ok(Self { driver: mem.clone(), device: mem, iova: 0, extra_features: 0 })
    }
}

/// One case set up and ready to run: a read-only virtio-blk over a file,
/// activated on a queue whose driver side this holds.
pub struct CaseRun<M: GuestMemory + Send + Sync + 'static> {
    block: Block<M>,
    driver: Driver,
    irq: Arc<Interrupts>,
}

impl<M: GuestMemory + Send + Sync + 'static> std::fmt::Debug for CaseRun<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRun")
            .field("layout", &self.driver.layout)
            .field("size", &self.driver.size)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> CaseRun<M> {
    /// Activates the device on `memory` and runs one round, checking what
    /// it read (which also faults in the memory it uses).
    pub fn new(file: &File, memory: &Memory<M>, layout: Layout, size: u32) -> Result<Self> {
        let mut block =
            Block::<M>::new(BlockConfig { file: file.try_clone()?, read_only: true, id: "bench".into() })?;
        let driver = Driver::new(memory.driver.clone(), memory.iova, layout, size)?;
        let irq = Arc::new(Interrupts::default());
        block.activate(Activation {
            mem: memory.device.clone(),
            queues: vec![driver.queue()?],
            acked_features: VIRTIO_F_VERSION_1
                | VIRTIO_RING_F_INDIRECT_DESC
                | VIRTIO_RING_F_EVENT_IDX
                | memory.extra_features,
            interrupt: irq.clone(),
        })?;
        let mut run = Self { block, driver, irq };
        let first_offset = run.driver.offset;
        run.round()?;
        run.driver.verify_slot0(first_offset)?;
        Ok(run)
    }

    /// One round: `depth` requests made available, one notification, all
    /// reaped and checked. Returns the requests completed.
    pub fn round(&mut self) -> Result<u64> {
        self.driver.submit()?;
        self.block.process_queue(0)?;
        let n = self.driver.reap()?;
        if n != self.driver.depth {
            return Err(format!("{n} of {} requests completed", self.driver.depth).into());
        }
        Ok(u64::from(n))
    }

    /// Runs `rounds` rounds; what they did and how long they took.
    pub fn measure(&mut self, rounds: u64) -> Result<Outcome> {
        let irq_before = self.irq.0.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut requests = 0;
        for _ in 0..rounds {
            requests += self.round()?;
        }
        let elapsed = start.elapsed();
        let interrupts = self.irq.0.load(Ordering::Relaxed) - irq_before;
        Ok(Outcome { requests, rounds, interrupts, elapsed })
    }
}

impl Outcome {
    /// This outcome and `other` together.
    pub fn add(&mut self, other: &Outcome) {
        self.requests += other.requests;
        self.rounds += other.rounds;
        self.interrupts += other.interrupts;
        self.elapsed += other.elapsed;
    }
}

/// Runs one case: a read-only virtio-blk over `file` on `memory`. Without
/// `measure` one checked round only.
pub fn run_case<M: GuestMemory + Send + Sync + 'static>(
    file: &File,
    memory: &Memory<M>,
    layout: Layout,
    size: u32,
    measure: Option<Duration>,
) -> Result<Outcome> {
    let mut run = CaseRun::new(file, memory, layout, size)?;
    let Some(measure) = measure else {
        return Ok(Outcome::default());
    };
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(500) {
        run.round()?;
    }
    let mut total = Outcome::default();
    // Check the clock every 16 rounds only.
    while total.elapsed < measure {
        total.add(&run.measure(16)?);
    }
    Ok(total)
}

/// The cases every benchmark runs.
pub const CASES: [(Layout, u32); 4] =
    [(Layout::Indirect, 4096), (Layout::Indirect, 65536), (Layout::Direct, 4096), (Layout::Direct, 65536)];
