//! What a VT-d translation costs, without KVM: an IOTLB hit, a miss
//! (context cached, a 4-level walk of the second-level tables and the
//! IOTLB fill), and what a device model's small access pays on a hot page
//! of its `VtdMemory`, next to an IOTLB hit of the virtio-iommu measured
//! in the same run.
//!
//! `cargo bench -p dmavm-vtd --bench translation` prints Markdown for
//! docs/benchmarks.md (`DMAVM_BENCH_SECS` per case, default 3). Run as a
//! test (`cargo test --all-targets`) it checks one round of every case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dmavm_devices::test_utils::blk_bench::report::{host, measure_time, utc_now};
use dmavm_devices::test_utils::blk_bench::timing::{ns_per_call, small_read_costs, translate};
use dmavm_iommu::request::{VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};
use dmavm_iommu::test_utils::{attach_req, map_req, Harness, DATA};
use dmavm_vtd::{translated_memory, FaultInterrupt, VtdConfig, VtdUnit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const MEM_SIZE: u64 = 64 << 20;
/// Guest memory appears at 4 GiB in the IOVA space.
const IOVA: u64 = 1 << 32;
const PAGES: u64 = MEM_SIZE / 4096;
const SOURCE_ID: u16 = 0x18;
// Register offsets (VT-d 4.x, 11.4).
const GCMD: u64 = 0x18;
const RTADDR: u64 = 0x20;
const IOTLB: u64 = 0x508;

struct NoInterrupts;

impl FaultInterrupt for NoInterrupts {
    fn send_msi(&self, _address: u64, _data: u32) {}
}

/// A unit with every page of guest memory mapped at `IOVA` in 4 KiB pages,
/// tables in the top 1 MiB, translation enabled; and that memory.
fn vtd() -> Result<(VtdUnit, GuestMemoryMmap)> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])?;
    let tables = MEM_SIZE - (1 << 20);
    let (root, context, pml4, pdpt, pd) =
        (tables, tables + 0x1000, tables + 0x2000, tables + 0x3000, tables + 0x4000);
    let pts = tables + 0x5000;
    let put = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a));
    put(root, context | 1)?;
    put(context + u64::from(SOURCE_ID & 0xff) * 16, pml4 | 1)?;
    put(context + u64::from(SOURCE_ID & 0xff) * 16 + 8, 0b010 | 1 << 8)?;
    put(pml4 + ((IOVA >> 39) & 0x1ff) * 8, pdpt | 3)?;
    put(pdpt + ((IOVA >> 30) & 0x1ff) * 8, pd | 3)?;
    for p in 0..PAGES {
        let pt = pts + (p / 512) * 0x1000;
        if p % 512 == 0 {
            put(pd + (p / 512) * 8, pt | 3)?;
        }
        put(pt + (p % 512) * 8, (p * 4096) | 3)?;
    }
    let unit = VtdUnit::new(
        VtdConfig { iotlb_entries: 4 * PAGES as usize, ..VtdConfig::default() },
        mem.clone(),
        Arc::new(NoInterrupts),
    );
    unit.write(RTADDR, &root.to_le_bytes());
    unit.write(GCMD, &(1u32 << 30).to_le_bytes());
    unit.write(GCMD, &(1u32 << 31).to_le_bytes());
    Ok((unit, mem))
}

fn rows(measure: Duration) -> Result<Vec<String>> {
    let mut rows = Vec::new();
    let (unit, mem) = vtd()?;
    let endpoint = unit.endpoint(SOURCE_ID);
    // Misses: a global IOTLB invalidation, then the first access of every
    // page (the invalidation is spread over all of them).
    let (mut miss_ns, mut passes) = (0.0, 0u32);
    let start = Instant::now();
    loop {
        unit.write(IOTLB, &(1u64 << 63 | 1 << 60).to_le_bytes());
        let t = Instant::now();
        for p in 0..PAGES {
            translate(&endpoint, IOVA + p * 4096, 8)?;
        }
        miss_ns += t.elapsed().as_nanos() as f64 / PAGES as f64;
        passes += 1;
        if start.elapsed() >= measure {
            break;
        }
    }
    let s = endpoint.stats();
    if s.iotlb_misses < PAGES || s.faults != 0 {
        return Err(format!("unexpected counters {s:?}").into());
    }
    rows.push(format!(
        "| VT-d translation, IOTLB miss (4-level walk of a 4 KiB page and IOTLB fill, context cached, {PAGES} pages) | {:.0} |",
        miss_ns / f64::from(passes)
    ));
    let same = ns_per_call(measure, 1024, |_| translate(&endpoint, IOVA + 0x1000, 8))?;
    rows.push(format!(
        "| VT-d `Iommu::translate` hit, 8 bytes, same page (the path of a small access that is not hot; it offers the page to the hot pages) | {same:.0} |"
    ));
    let strided =
        ns_per_call(measure, 1024, |i| translate(&endpoint, IOVA + (i * 4096 * 7) % MEM_SIZE, 4096))?;
    rows.push(format!(
        "| VT-d translation, IOTLB hit, 4 KiB, pages all over ({PAGES} cached) | {strided:.0} |"
    ));
    // What a device model pays per small access: an 8-byte read through
    // its translated memory (a hot page), less the same read of
    // guest-physical memory.
    let tm = translated_memory(mem.clone(), endpoint.clone());
    let (through, direct) = small_read_costs(measure, &tm, IOVA + 0x1000, &mem, 0x1000)?;
    rows.push(format!(
        "| VT-d translated 8-byte read (hot page): {through:.0} ns, less a guest-physical one ({direct:.0} ns) | {:.0} |",
        through - direct
    ));

    // The virtio-iommu's IOTLB hit, the same access.
    let mut h = Harness::new(&[0x10]);
    if h.status(&attach_req(1, 0x10, 0)) != 0
        || h.status(&map_req(1, IOVA, IOVA + 0xfff, DATA, VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE))
            != 0
    {
        return Err("virtio-iommu ATTACH/MAP failed".into());
    }
    let virtio = h.dev.handle().endpoint(0x10).ok_or("no virtio-iommu endpoint")?;
    let same = ns_per_call(measure, 1024, |_| translate(&virtio, IOVA + 0x10, 8))?;
    rows.push(format!("| virtio-iommu translation, IOTLB hit, 8 bytes, same page | {same:.0} |"));
    Ok(rows)
}

fn main() -> Result<()> {
    let measure = measure_time();
    let rows = rows(measure.unwrap_or(Duration::ZERO))?;
    let Some(measure) = measure else {
        println!("translation: every case checked once (run with `cargo bench` to measure)");
        return Ok(());
    };
    println!("{}: {}; {} s per case", utc_now(), host(), measure.as_secs_f64());
    println!();
    println!("| operation | ns |");
    println!("|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
