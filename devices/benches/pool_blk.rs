//! What confining a device to a restricted DMA pool costs the device
//! model, without KVM: the virtio-blk benchmark's read requests
//! (`dmavm_devices::test_utils::blk_bench`, the driver and cases of
//! `blk_throughput`) once on guest-physical memory (direct) and once on a
//! `PoolMemory` whose pool covers everything the driver uses (all 64 MiB),
//! so that every access passes the bounds check and the difference is the
//! check itself. "accesses per request" is the pool's own counter over one
//! round. Then the check alone, which the whole-request figures on a busy
//! host cannot resolve: the time of one 2-byte read (`read_obj::<u16>`, a
//! ring index) through guest memory and through the pool, and from it the
//! check's cost per 4 KiB request (accesses per request times the
//! difference, over the direct request's time).
//!
//! `cargo bench -p dmavm-devices --features test-utils --bench pool_blk`
//! prints Markdown for docs/benchmarks.md (`DMAVM_BENCH_SECS` per case,
//! default 3; each case measured direct then pool four times over, and the
//! best of each kept: on a shared host the fastest run is the one least
//! disturbed). Run as a test (`cargo test --all-targets`) it checks one
//! round of every case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmavm_devices::test_utils::blk_bench::backing::{Backing, DISK_SIZE};
use dmavm_devices::test_utils::blk_bench::driver::{run_case, Memory, CASES, MEM_SIZE};
use dmavm_devices::test_utils::blk_bench::report::{host, measure_time, utc_now};
use dmavm_devices::test_utils::blk_bench::Result;
use dmavm_devices::virtio::{pool_memory, PoolBounds, PoolCounters, PoolMemory, VIRTIO_F_ACCESS_PLATFORM};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// ns per `read_obj::<u16>` on `mem`: the fastest of 8 runs of 2^20 reads
/// over 64 addresses 4 KiB apart.
fn read_ns<M: GuestMemory>(mem: &M) -> f64 {
    const READS: u32 = 1 << 20;
    let mut best = Duration::MAX;
    for _ in 0..8 {
        let start = Instant::now();
        for i in 0..READS {
            let addr = GuestAddress(u64::from(i % 64) << 12);
            black_box(mem.read_obj::<u16>(black_box(addr)).ok());
        }
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / f64::from(READS)
}

fn main() -> Result<()> {
    let measure = measure_time();
    let (backing, file) = Backing::create()?;
    let direct = Memory::direct()?;
    let counters = Arc::new(PoolCounters::default());
    let bounds = PoolBounds::new(0, MEM_SIZE as u64, counters.clone(), "bench")?;
    let pool: Memory<PoolMemory> = Memory {
        driver: direct.driver.clone(),
        device: Arc::new(pool_memory((*direct.driver).clone(), bounds)),
        iova: 0,
        extra_features: VIRTIO_F_ACCESS_PLATFORM,
    };
    let mut rows = Vec::new();
    let mut per_request_4k = 0.0;
    let mut direct_4k = f64::MAX;
    for (layout, size) in CASES {
        let before = counters.inside();
        run_case(&file, &pool, layout, size, None)?;
        let per_request = (counters.inside() - before) as f64 / f64::from(layout.depth());
        assert_eq!(counters.refused(), 0, "an access of the benchmark fell outside the pool");
        let Some(measure) = measure else { continue };
        let (mut best_direct, mut best_pool) = (f64::MAX, f64::MAX);
        let mut last = None;
        for _ in 0..4 {
            let d = run_case(&file, &direct, layout, size, Some(measure))?;
            let p = run_case(&file, &pool, layout, size, Some(measure))?;
            let ns = |o: &dmavm_devices::test_utils::blk_bench::driver::Outcome| {
                o.elapsed.as_nanos() as f64 / o.requests as f64
            };
            best_direct = best_direct.min(ns(&d));
            best_pool = best_pool.min(ns(&p));
            last = Some((d, p));
        }
        let Some((d, p)) = last else { continue };
        if size == 4096 && best_direct < direct_4k {
            (direct_4k, per_request_4k) = (best_direct, per_request);
        }
        let ratio = best_pool / best_direct;
        rows.push(d.row(
            layout,
            size,
            &["direct".into(), format!("{best_direct:.0}"), "-".into(), "-".into()],
        ));
        rows.push(p.row(
            layout,
            size,
            &[
                "pool".into(),
                format!("{best_pool:.0}"),
                format!("{per_request:.1}"),
                format!("{:+.1}%", (ratio - 1.0) * 100.0),
            ],
        ));
    }
    if measure.is_none() {
        println!("pool_blk: every case checked once on pool memory (run with `cargo bench` to measure)");
        return Ok(());
    }
    println!();
    println!(
        "{}: virtio-blk device model, reads, {} MiB guest memory, 256-entry queue, {} MiB disk, {}; {}; \
         {} s per run, best of four runs each",
        utc_now(),
        MEM_SIZE >> 20,
        DISK_SIZE >> 20,
        backing.describe(),
        host(),
        measure.map_or(0.0, |m| m.as_secs_f64()),
    );
    println!();
    println!(
        "| request size | layout | requests per notification | requests/s | MiB/s | ns/request | interrupts per \
         notification | memory | best ns/request | pool accesses per request | pool vs direct |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    let (mut direct_read, mut pool_read) = (f64::MAX, f64::MAX);
    for _ in 0..4 {
        direct_read = direct_read.min(read_ns(&*direct.device));
        pool_read = pool_read.min(read_ns(&*pool.device));
    }
    let check = (pool_read - direct_read).max(0.0);
    println!();
    println!("| 2-byte read | ns |");
    println!("|---|---|");
    println!("| guest memory (direct) | {direct_read:.1} |");
    println!("| through the pool's bounds | {pool_read:.1} |");
    println!(
        "| the check, per access | {check:.1} |\n| the check, per 4 KiB request ({per_request_4k:.1} accesses, of \
         {direct_4k:.0} ns) | {:.0} ({:.2}%) |",
        check * per_request_4k,
        100.0 * check * per_request_4k / direct_4k
    );
    Ok(())
}
