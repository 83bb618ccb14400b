//! What translation through the virtual IOMMU costs, without KVM.
//!
//! 1. virtio-blk: the same read requests as `dmavm-devices`' `blk_throughput`
//!    (its driver and cases, from `dmavm_devices::test_utils::blk_bench`),
//!    on guest-physical memory and on a `TranslatedMemory` through a
//!    virtio-iommu endpoint, its rings and buffers at IOVAs 4 GiB above
//!    their guest-physical addresses that a driver mapped over the request
//!    queue as Linux would: ATTACH, then MAP of all 64 MiB of guest memory
//!    in 4 KiB or in 2 MiB mappings; the three take turns of a few
//!    milliseconds each.
//! 2. The IOTLB: one translation that hits, one that misses (the first
//!    access of each of 16384 4 KiB mappings after a re-ATTACH emptied the
//!    IOTLB that MAP filled), and the cost of a MAP and of an UNMAP request.
//!
//! `cargo bench -p dmavm-iommu --bench translated_blk` prints Markdown for
//! docs/benchmarks.md (`DMAVM_BENCH_SECS` per case, default 3). Run as a
//! test (`cargo test --all-targets`) it checks one round of every case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dmavm_devices::test_utils::blk_bench::backing::{Backing, DISK_SIZE};
use dmavm_devices::test_utils::blk_bench::driver::{CaseRun, Memory, Outcome, CASES, FREE_FROM, MEM_SIZE};
use dmavm_devices::test_utils::blk_bench::report::{host, measure_time, utc_now};
use dmavm_devices::test_utils::blk_bench::timing::{ns_per_call, small_read_costs, translate};
use dmavm_devices::test_utils::blk_bench::Result;
use dmavm_devices::virtio::{
    Activation, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM,
};
use dmavm_iommu::device::IOMMU_FEATURES;
use dmavm_iommu::request::{
    readable_size, HEAD_SIZE, TAIL_SIZE, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE,
    VIRTIO_IOMMU_T_ATTACH, VIRTIO_IOMMU_T_MAP, VIRTIO_IOMMU_T_UNMAP,
};
use dmavm_iommu::{translated_memory, IommuConfig, IommuHandle, TranslatedMemory, VirtioIommu};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where guest memory appears in the endpoint's IOVA space: 4 GiB up, so
/// that an untranslated access to an IOVA would miss guest memory.
const IOVA: u64 = 1 << 32;
const ENDPOINT: u32 = 0x10;
const DOMAIN: u32 = 1;

// The IOMMU's request queue and request buffers, above what the blk
// driver uses.
const IOMMU_RING: u64 = FREE_FROM;
const IOMMU_REQUESTS: u64 = FREE_FROM + 0x1_0000;

const REQUEST_SLOT: u64 = 64;
const IOMMU_QUEUE: u16 = 256;
/// Requests per notification (two descriptors each).
const BATCH: u16 = IOMMU_QUEUE / 2;

struct NoInterrupts;

impl VirtioInterrupt for NoInterrupts {
    fn trigger(&self, _kind: InterruptKind) -> std::io::Result<()> {
        Ok(())
    }
}

/// A virtio-iommu with one endpoint, driven over its request queue.
struct IommuDriver {
    device: VirtioIommu<GuestMemoryMmap>,
    mem: Arc<GuestMemoryMmap>,
    avail_idx: u16,
    used_idx: u16,
}

impl IommuDriver {
    fn new(mem: Arc<GuestMemoryMmap>) -> Result<Self> {
        let mut device = VirtioIommu::new(IommuConfig::default(), &[ENDPOINT], &[])?;
        // The request queue at `IOMMU_RING`, the event queue (never given
        // a buffer: no faults happen here) above it.
        let queue = |base: u64| -> Result<Queue> {
            for off in [0x1000u64, 0x1002, 0x2000, 0x2002] {
                mem.write_obj(0u16, GuestAddress(base + off))?;
            }
            let mut q = Queue::new(IOMMU_QUEUE)?;
            q.set_size(IOMMU_QUEUE);
            q.set_desc_table_address(Some(base as u32), Some(0));
            q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
            q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
            q.set_ready(true);
            Ok(q)
        };
        let (request, events) = (queue(IOMMU_RING)?, queue(IOMMU_RING + 0x3000)?);
        device.activate(Activation {
            mem: mem.clone(),
            queues: vec![request, events],
            acked_features: IOMMU_FEATURES,
            interrupt: Arc::new(NoInterrupts),
        })?;
        Ok(Self { device, mem, avail_idx: 0, used_idx: 0 })
    }

    fn handle(&self) -> IommuHandle {
        self.device.handle()
    }

    /// Sends `requests` (type and body after the head), `BATCH` per
    /// notification, and checks that each succeeded.
    fn send(&mut self, requests: &[(u8, Vec<u8>)]) -> Result<()> {
        for batch in requests.chunks(usize::from(BATCH)) {
            for (slot, (kind, body)) in batch.iter().enumerate() {
                let slot = slot as u64;
                let at = IOMMU_REQUESTS + REQUEST_SLOT * slot;
                let len = readable_size(*kind).ok_or("unknown request type")?;
                let mut bytes = vec![0u8; len + TAIL_SIZE];
                bytes[0] = *kind;
                bytes[HEAD_SIZE..HEAD_SIZE + body.len()].copy_from_slice(body);
                bytes[len] = 0xff;
                self.mem.write_slice(&bytes, GuestAddress(at))?;
                let desc = IOMMU_RING + 32 * slot;
                self.mem.write_obj(at, GuestAddress(desc))?;
                self.mem.write_obj(len as u32, GuestAddress(desc + 8))?;
                self.mem.write_obj(1u16, GuestAddress(desc + 12))?; // NEXT
                self.mem.write_obj(2 * slot as u16 + 1, GuestAddress(desc + 14))?;
                self.mem.write_obj(at + len as u64, GuestAddress(desc + 16))?;
                self.mem.write_obj(TAIL_SIZE as u32, GuestAddress(desc + 24))?;
                self.mem.write_obj(2u16, GuestAddress(desc + 28))?; // WRITE
                let entry = self.avail_idx.wrapping_add(slot as u16) % IOMMU_QUEUE;
                self.mem
                    .write_obj(2 * slot as u16, GuestAddress(IOMMU_RING + 0x1004 + 2 * u64::from(entry)))?;
            }
            self.avail_idx = self.avail_idx.wrapping_add(batch.len() as u16);
            self.mem.write_obj(self.avail_idx, GuestAddress(IOMMU_RING + 0x1002))?;
            self.device.process_queue(0)?;
            let used: u16 = self.mem.read_obj(GuestAddress(IOMMU_RING + 0x2002))?;
            if used != self.avail_idx {
                return Err(format!(
                    "IOMMU completed {} of {} requests",
                    used.wrapping_sub(self.used_idx),
                    batch.len()
                )
                .into());
            }
            self.used_idx = used;
            for (slot, (kind, _)) in batch.iter().enumerate() {
                let at = IOMMU_REQUESTS + REQUEST_SLOT * slot as u64;
                let len = readable_size(*kind).ok_or("unknown request type")?;
                let status: u8 = self.mem.read_obj(GuestAddress(at + len as u64))?;
                if status != 0 {
                    return Err(format!("IOMMU request type {kind} failed with status {status}").into());
                }
            }
        }
        Ok(())
    }
}

fn attach() -> (u8, Vec<u8>) {
    let mut b = DOMAIN.to_le_bytes().to_vec();
    b.extend_from_slice(&ENDPOINT.to_le_bytes());
    (VIRTIO_IOMMU_T_ATTACH, b)
}

/// MAP (read-write) of `[phys, phys + len)` at `phys + IOVA`.
fn map(phys: u64, len: u64) -> (u8, Vec<u8>) {
    let mut b = DOMAIN.to_le_bytes().to_vec();
    b.extend_from_slice(&(IOVA + phys).to_le_bytes());
    b.extend_from_slice(&(IOVA + phys + len - 1).to_le_bytes());
    b.extend_from_slice(&phys.to_le_bytes());
    b.extend_from_slice(&(VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE).to_le_bytes());
    (VIRTIO_IOMMU_T_MAP, b)
}

fn unmap(phys: u64, len: u64) -> (u8, Vec<u8>) {
    let mut b = DOMAIN.to_le_bytes().to_vec();
    b.extend_from_slice(&(IOVA + phys).to_le_bytes());
    b.extend_from_slice(&(IOVA + phys + len - 1).to_le_bytes());
    (VIRTIO_IOMMU_T_UNMAP, b)
}

/// All of guest memory in mappings of `granule`.
fn maps(granule: u64) -> Vec<(u8, Vec<u8>)> {
    (0..MEM_SIZE as u64).step_by(granule as usize).map(|p| map(p, granule)).collect()
}

/// An IOMMU whose endpoint has all of guest memory mapped at `IOVA` in
/// mappings of `granule`; and how long the MAPs took, per request.
fn mapped(mem: &Arc<GuestMemoryMmap>, granule: u64) -> Result<(IommuDriver, Duration)> {
    let mut iommu = IommuDriver::new(mem.clone())?;
    iommu.send(&[attach()])?;
    let requests = maps(granule);
    let start = Instant::now();
    iommu.send(&requests)?;
    Ok((iommu, start.elapsed() / requests.len() as u32))
}

/// Translations and IOTLB misses of the endpoint so far.
fn counters(handle: &IommuHandle) -> (u64, u64) {
    handle
        .stats()
        .iter()
        .find(|s| s.endpoint == ENDPOINT)
        .map_or((0, 0), |s| (s.translations, s.iotlb_misses))
}

/// How the three set-ups of a case (direct, translated with 4 KiB and
/// with 2 MiB mappings) share the machine: they take turns of `TURN`
/// rounds each (a few milliseconds) until each has run for the case's
/// time, so that a slow moment of a shared host falls on all three alike.
/// The turns are reported in `GROUPS` consecutive groups, each group's
/// ratio comparing like with like.
const TURN: u64 = 16;
const GROUPS: usize = 9;

/// A translated set-up of one case: its IOMMU (kept alive), the case
/// running on its memory, and its translations and IOTLB misses per
/// request in the first, checked round.
struct Translated {
    granule: u64,
    _iommu: IommuDriver,
    run: CaseRun<TranslatedMemory>,
    per_request: (f64, f64),
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn blk_rows(measure: Option<Duration>) -> Result<Vec<String>> {
    let (_backing, file) = Backing::create()?;
    let mut rows = Vec::new();
    for (layout, size) in CASES {
        let mut direct = CaseRun::new(&file, &Memory::direct()?, layout, size)?;
        let mut translated = Vec::new();
        for granule in [4096u64, 2 << 20] {
            // Guest memory of its own: each set-up's driver keeps its rings
            // at the same guest-physical addresses.
            let mem = Memory::direct()?.driver;
            let (iommu, _) = mapped(&mem, granule)?;
            let handle = iommu.handle();
            let endpoint = handle.endpoint(ENDPOINT).ok_or("no endpoint")?;
            let memory = Memory {
                driver: mem.clone(),
                device: Arc::new(translated_memory((*mem).clone(), endpoint)),
                iova: IOVA,
                extra_features: VIRTIO_F_ACCESS_PLATFORM,
            };
            let before = counters(&handle);
            let run = CaseRun::new(&file, &memory, layout, size)?;
            let after = counters(&handle);
            let per_request = |a: u64, b: u64| (a - b) as f64 / f64::from(layout.depth());
            let per_request = (per_request(after.0, before.0), per_request(after.1, before.1));
            translated.push(Translated { granule, _iommu: iommu, run, per_request });
        }
        let Some(measure) = measure else { continue };
        let warm_up = Instant::now();
        while warm_up.elapsed() < Duration::from_millis(500) {
            direct.measure(TURN)?;
            for t in &mut translated {
                t.run.measure(TURN)?;
            }
        }
        // Per group: direct's outcome, then each translated set-up's.
        let mut groups = Vec::new();
        for _ in 0..GROUPS {
            let mut group = vec![Outcome::default(); 1 + translated.len()];
            while group[0].elapsed < measure / GROUPS as u32 {
                group[0].add(&direct.measure(TURN)?);
                for (t, outcome) in translated.iter_mut().zip(&mut group[1..]) {
                    outcome.add(&t.run.measure(TURN)?);
                }
            }
            groups.push(group);
        }
        for (i, t) in translated.iter().enumerate() {
            let ratios: Vec<f64> = groups.iter().map(|g| g[i + 1].rate() / g[0].rate()).collect();
            let per_group: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            rows.push(format!(
                "| {} KiB | {} | {} | {:.0} | {:.0} | {:.2} ({}) | {:.1} | {:.2} |",
                size / 1024,
                layout.describe(),
                if t.granule == 4096 { "4 KiB" } else { "2 MiB" },
                median(groups.iter().map(|g| g[0].rate()).collect()),
                median(groups.iter().map(|g| g[i + 1].rate()).collect()),
                median(ratios),
                per_group.join(", "),
                t.per_request.0,
                t.per_request.1,
            ));
        }
    }
    Ok(rows)
}

fn iotlb_rows(measure: Duration) -> Result<Vec<String>> {
    let mem = Memory::direct()?.driver;
    let pages = MEM_SIZE as u64 / 4096;
    let mut rows = Vec::new();
    // Misses: MAP fills the IOTLB, a re-ATTACH empties it; then the first
    // access of each 4 KiB mapping misses. A fresh IOMMU per pass; MAP and
    // UNMAP per request on the side.
    let (mut miss_ns, mut map_ns, mut unmap_ns, mut passes) = (0.0, 0.0, 0.0, 0u32);
    let start = Instant::now();
    while start.elapsed() < measure || passes == 0 {
        let (mut iommu, per_map) = mapped(&mem, 4096)?;
        let endpoint = iommu.handle().endpoint(ENDPOINT).ok_or("no endpoint")?;
        iommu.send(&[attach()])?;
        let t = Instant::now();
        for p in 0..pages {
            translate(&endpoint, IOVA + p * 4096, 8)?;
        }
        miss_ns += t.elapsed().as_nanos() as f64 / pages as f64;
        map_ns += per_map.as_nanos() as f64;
        let unmaps: Vec<_> = (0..pages).map(|p| unmap(p * 4096, 4096)).collect();
        let t = Instant::now();
        iommu.send(&unmaps)?;
        unmap_ns += t.elapsed().as_nanos() as f64 / pages as f64;
        passes += 1;
    }
    let passes = f64::from(passes);
    rows.push(format!("| MAP request (4 KiB, batches of {BATCH}) | {:.0} |", map_ns / passes));
    rows.push(format!("| UNMAP request (4 KiB, batches of {BATCH}) | {:.0} |", unmap_ns / passes));
    rows.push(format!(
        "| translation, IOTLB miss (first access of a 4 KiB mapping after the IOTLB was emptied, {pages} mappings) | {:.0} |",
        miss_ns / passes
    ));
    // Hits: 8-byte accesses (a descriptor) and 4 KiB accesses, one page
    // over and over, and strided over all pages.
    for granule in [4096u64, 2 << 20] {
        let (iommu, _) = mapped(&mem, granule)?;
        let endpoint = iommu.handle().endpoint(ENDPOINT).ok_or("no endpoint")?;
        let g = if granule == 4096 { "4 KiB" } else { "2 MiB" };
        let same = ns_per_call(measure, 1024, |_| translate(&endpoint, IOVA + 0x1000, 8))?;
        rows.push(format!("| translation, IOTLB hit, 8 bytes, same page, {g} mappings | {same:.0} |"));
        let strided = ns_per_call(measure, 1024, |i| {
            translate(&endpoint, IOVA + (i * 4096 * 7) % MEM_SIZE as u64, 4096)
        })?;
        rows.push(format!("| translation, IOTLB hit, 4 KiB, pages all over, {g} mappings | {strided:.0} |"));
        // What a device model pays per small access: an 8-byte read
        // through its translated memory (a hot page), less the same read
        // of guest-physical memory.
        let tm = translated_memory((*mem).clone(), endpoint.clone());
        let (through, direct) = small_read_costs(measure, &tm, IOVA + 0x1000, &*mem, 0x1000)?;
        rows.push(format!(
            "| translated 8-byte read (hot page), {g} mappings: {through:.0} ns, less a guest-physical one ({direct:.0} ns) | {:.0} |",
            through - direct
        ));
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let measure = measure_time();
    let blk = blk_rows(measure)?;
    let Some(measure) = measure else {
        println!("translated_blk: every case checked once (run with `cargo bench` to measure)");
        return Ok(());
    };
    let iotlb = iotlb_rows(measure)?;
    println!();
    println!(
        "{}: virtio-blk device model, reads, direct and through a virtio-iommu endpoint, {} MiB guest memory \
         mapped whole, {} MiB disk on tmpfs; {}; {} s per case and set-up, in turns of {TURN} rounds",
        utc_now(),
        MEM_SIZE >> 20,
        DISK_SIZE >> 20,
        host(),
        measure.as_secs_f64(),
    );
    println!();
    println!(
        "| request size | layout | mappings | direct requests/s (median) | translated requests/s (median) | \
         translated / direct: median of the {GROUPS} groups (each group) | translations per request | \
         IOTLB misses per request |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in blk {
        println!("{r}");
    }
    println!();
    println!("| operation | ns |");
    println!("|---|---|");
    for r in iotlb {
        println!("{r}");
    }
    Ok(())
}
