//! What translation through the virtual IOMMU costs, without KVM.
//!
//! 1. virtio-blk: the same read requests as `dmavm-devices`' `blk_throughput`
//!    (its driver and cases, from `dmavm_devices::test_utils::blk_bench`),
//!    once on guest-physical memory and once on a `TranslatedMemory`
//!    through a virtio-iommu endpoint, its rings and buffers at IOVAs
//!    (guest-physical + 4 GiB) that a driver mapped over the request queue
//!    as Linux would: ATTACH, then MAP of all 64 MiB of guest memory in
//!    4 KiB or in 2 MiB mappings.
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
use dmavm_devices::test_utils::blk_bench::driver::{run_case, Memory, CASES, FREE_FROM, MEM_SIZE};
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
use dmavm_iommu::{translated_memory, IommuConfig, IommuHandle, VirtioIommu};
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

fn blk_rows(measure: Option<Duration>) -> Result<Vec<String>> {
    let (_backing, file) = Backing::create()?;
    let mut rows = Vec::new();
    for (layout, size) in CASES {
        let direct_memory = Memory::direct()?;
        let direct = run_case(&file, &direct_memory, layout, size, measure)?;
        let mem = direct_memory.driver;
        for granule in [4096u64, 2 << 20] {
            let (iommu, _) = mapped(&mem, granule)?;
            let handle = iommu.handle();
            let endpoint = handle.endpoint(ENDPOINT).ok_or("no endpoint")?;
            let translated = Memory {
                driver: mem.clone(),
                device: Arc::new(translated_memory((*mem).clone(), endpoint)),
                iova: IOVA,
                extra_features: VIRTIO_F_ACCESS_PLATFORM,
            };
            // One round alone first: translations and misses per request.
            let before = counters(&handle);
            run_case(&file, &translated, layout, size, None)?;
            let after = counters(&handle);
            let per_request = |a: u64, b: u64| (a - b) as f64 / f64::from(layout.depth());
            let o = run_case(&file, &translated, layout, size, measure)?;
            if measure.is_none() {
                continue;
            }
            rows.push(format!(
                "| {} KiB | {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} |",
                size / 1024,
                layout.describe(),
                if granule == 4096 { "4 KiB" } else { "2 MiB" },
                direct.rate(),
                o.rate(),
                o.rate() / direct.rate(),
                per_request(after.0, before.0),
                per_request(after.1, before.1),
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
         mapped whole, {} MiB disk on tmpfs; {}; {} s per case",
        utc_now(),
        MEM_SIZE >> 20,
        DISK_SIZE >> 20,
        host(),
        measure.as_secs_f64(),
    );
    println!();
    println!("| request size | layout | mappings | direct requests/s | translated requests/s | translated / direct | translations per request | IOTLB misses per request |");
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
