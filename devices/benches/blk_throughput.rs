//! Device-model throughput of virtio-blk, without KVM: this program plays
//! the guest driver against `Block<GuestMemoryMmap>` in one thread.
//!
//! Set-up: 64 MiB of guest memory, one split virtqueue of 256 entries laid
//! out in it, a 256 MiB backing file on tmpfs (`/dev/shm`, else the system
//! temporary directory, which the output then names) filled once with a
//! pattern. Each round the "driver" writes `depth` read requests
//! (`VIRTIO_BLK_T_IN`; header, data and status buffers) at sequential disk
//! offsets that wrap at the end of the disk, publishes them with one store
//! of the available index, calls `process_queue(0)` as the notification
//! would, and reaps the used ring, checking every used length and status
//! byte. Two layouts: indirect descriptor tables, one ring entry per
//! request, 128 requests per round (what a Linux guest does once
//! `VIRTIO_RING_F_INDIRECT_DESC` is negotiated), and direct 3-descriptor
//! chains, 85 per round (all a 256-entry table holds).
//!
//! The figures are per request, driver work included, on a warm page cache:
//! they measure the device model's cost (ring handling, chain validation,
//! IOMMU-free translation, one `preadv` per request, used ring, interrupt
//! decision), not a disk.
//!
//! `cargo bench -p dmavm-devices --bench blk_throughput` runs each case for
//! `DMAVM_BENCH_SECS` seconds (default 3, after a 0.5 s warm-up) and prints
//! Markdown table rows for docs/benchmarks.md. Run without `--bench` (as
//! `cargo test --all-targets` does) it only checks one round of each case.

use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmavm_devices::virtio::{
    Activation, Block, BlockConfig, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const MEM_SIZE: usize = 64 << 20;
const DISK_SIZE: u64 = 256 << 20;
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

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;
const VIRTIO_BLK_T_IN: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One ring entry per request pointing at a 3-entry indirect table.
    Indirect,
    /// Three chained descriptors per request in the ring's table.
    Direct,
}

impl Layout {
    fn depth(self) -> u16 {
        match self {
            Layout::Indirect => 128,
            Layout::Direct => QUEUE_SIZE / 3,
        }
    }

    fn describe(self) -> &'static str {
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

/// The backing file, removed when dropped.
struct Backing {
    path: PathBuf,
    tmpfs: bool,
}

impl Backing {
    /// Creates and fills the file; every 8-byte word holds its own offset.
    fn create() -> Result<(Self, File)> {
        let shm = Path::new("/dev/shm");
        let (dir, tmpfs) =
            if shm.is_dir() { (shm.to_path_buf(), true) } else { (std::env::temp_dir(), false) };
        let path = dir.join(format!("dmavm-blk-bench-{}", std::process::id()));
        let backing = Self { path, tmpfs };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&backing.path)
            .map_err(|e| format!("cannot create {}: {e}", backing.path.display()))?;
        let mut chunk = vec![0u8; 1 << 20];
        for base in (0..DISK_SIZE).step_by(chunk.len()) {
            for (i, word) in chunk.chunks_exact_mut(8).enumerate() {
                word.copy_from_slice(&(base + 8 * i as u64).to_le_bytes());
            }
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        Ok((backing, file))
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
    fn new(mem: Arc<GuestMemoryMmap>, layout: Layout, size: u32) -> Result<Self> {
        let depth = layout.depth();
        let mut heads = Vec::with_capacity(usize::from(depth));
        for slot in 0..depth {
            let s = u64::from(slot);
            let header = HEADERS + 16 * s;
            let data = DATA + u64::from(size) * s;
            let status = STATUS + s;
            match layout {
                Layout::Indirect => {
                    let table = INDIRECT_TABLES + 48 * s;
                    put_desc(&mem, table, header, 16, VRING_DESC_F_NEXT, 1)?;
                    put_desc(&mem, table + 16, data, size, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2)?;
                    put_desc(&mem, table + 32, status, 1, VRING_DESC_F_WRITE, 0)?;
                    put_desc(&mem, DESC_TABLE + 16 * s, table, 48, VRING_DESC_F_INDIRECT, 0)?;
                    heads.push(slot);
                }
                Layout::Direct => {
                    let first = 3 * slot;
                    let at = DESC_TABLE + 16 * u64::from(first);
                    put_desc(&mem, at, header, 16, VRING_DESC_F_NEXT, first + 1)?;
                    put_desc(&mem, at + 16, data, size, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, first + 2)?;
                    put_desc(&mem, at + 32, status, 1, VRING_DESC_F_WRITE, 0)?;
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
        Ok(Self { mem, layout, size, depth, heads, avail_idx: 0, used_idx: 0, offset: 0 })
    }

    fn queue(&self) -> Result<Queue> {
        let mut q = Queue::new(QUEUE_SIZE)?;
        q.set_size(QUEUE_SIZE);
        q.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
        q.set_used_ring_address(Some(USED_RING as u32), Some(0));
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

struct Outcome {
    requests: u64,
    rounds: u64,
    interrupts: usize,
    elapsed: Duration,
}

fn run_case(file: &File, layout: Layout, size: u32, measure: Option<Duration>) -> Result<Outcome> {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])?);
    let mut block = Block::<GuestMemoryMmap>::new(BlockConfig {
        file: file.try_clone()?,
        read_only: true,
        id: "bench".into(),
        access_platform: false,
    })?;
    let mut driver = Driver::new(mem.clone(), layout, size)?;
    let irq = Arc::new(Interrupts::default());
    block.activate(Activation {
        mem: mem.clone(),
        queues: vec![driver.queue()?],
        acked_features: VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX,
        interrupt: irq.clone(),
    })?;

    let mut round = |driver: &mut Driver| -> Result<u64> {
        driver.submit()?;
        block.process_queue(0)?;
        let n = driver.reap()?;
        if n != driver.depth {
            return Err(format!("{n} of {} requests completed", driver.depth).into());
        }
        Ok(u64::from(n))
    };

    // One checked round first (and the warm-up faults in guest memory).
    let first_offset = driver.offset;
    round(&mut driver)?;
    driver.verify_slot0(first_offset)?;
    let Some(measure) = measure else {
        return Ok(Outcome { requests: 0, rounds: 0, interrupts: 0, elapsed: Duration::ZERO });
    };
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(500) {
        round(&mut driver)?;
    }

    let irq_before = irq.0.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut requests = 0;
    let mut rounds = 0;
    loop {
        // Check the clock every 16 rounds only.
        for _ in 0..16 {
            requests += round(&mut driver)?;
            rounds += 1;
        }
        if start.elapsed() >= measure {
            break;
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome { requests, rounds, interrupts: irq.0.load(Ordering::Relaxed) - irq_before, elapsed })
}

/// The same sequential reads as plain `pread(2)`s into one buffer: the
/// floor under the device model's figures. Returns ns per read.
fn pread_baseline(file: &File, size: u32, measure: Duration) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; size as usize];
    let mut offset = 0;
    let mut reads = 0u64;
    let start = Instant::now();
    while start.elapsed() < measure {
        for _ in 0..1024 {
            file.read_exact_at(&mut buf, offset)?;
            offset = (offset + u64::from(size)) % DISK_SIZE;
        }
        reads += 1024;
    }
    Ok(start.elapsed().as_nanos() as f64 / reads as f64)
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock (civil-from-days, H. Hinnant).
fn utc_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("DMAVM_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let measure = bench.then(|| Duration::from_secs_f64(secs));

    let (backing, file) = Backing::create()?;
    let cases = [
        (Layout::Indirect, 4096u32),
        (Layout::Indirect, 65536),
        (Layout::Direct, 4096),
        (Layout::Direct, 65536),
    ];
    let mut rows = Vec::new();
    for (layout, size) in cases {
        let o = run_case(&file, layout, size, measure)?;
        if measure.is_none() {
            continue;
        }
        let secs = o.elapsed.as_secs_f64();
        let rps = o.requests as f64 / secs;
        let mibs = rps * f64::from(size) / f64::from(1u32 << 20);
        let ns = o.elapsed.as_nanos() as f64 / o.requests as f64;
        let irq_per_round = o.interrupts as f64 / o.rounds as f64;
        rows.push(format!(
            "| {} KiB | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} |",
            size / 1024,
            layout.describe(),
            layout.depth(),
            rps,
            mibs,
            ns,
            irq_per_round,
        ));
    }
    let Some(measure) = measure else {
        println!("blk_throughput: every case checked once (run with `cargo bench` to measure)");
        return Ok(());
    };
    for size in [4096u32, 65536] {
        let ns = pread_baseline(&file, size, measure)?;
        let rps = 1e9 / ns;
        rows.push(format!(
            "| {} KiB | baseline: `pread(2)` alone, no device model | 1 | {:.0} | {:.0} | {:.0} | - |",
            size / 1024,
            rps,
            rps * f64::from(size) / f64::from(1u32 << 20),
            ns,
        ));
    }
    let where_ = if backing.tmpfs {
        "backing file on tmpfs (/dev/shm)".to_string()
    } else {
        format!("backing file in {} (no /dev/shm: not necessarily tmpfs)", std::env::temp_dir().display())
    };
    println!();
    println!(
        "{}: virtio-blk device model, reads, {} MiB guest memory, 256-entry queue, {} MiB disk, \
         {where_}; {} CPUs, {}; {secs} s per case",
        utc_now(),
        MEM_SIZE >> 20,
        DISK_SIZE >> 20,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model(),
    );
    println!();
    println!("| request size | layout | requests per notification | requests/s | MiB/s | ns/request | interrupts per notification |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
