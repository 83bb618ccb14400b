//! Device-model throughput of virtio-blk, without KVM: this program plays
//! the guest driver against `Block<GuestMemoryMmap>` in one thread (see
//! `dmavm_devices::test_utils::blk_bench::driver` for the set-up and the two request layouts), on a
//! 256 MiB backing file on tmpfs filled once with a pattern.
//!
//! The figures are per request, driver work included, on a warm page cache:
//! they measure the device model's cost (ring handling, chain validation,
//! one `preadv` per request, used ring, interrupt decision), not a disk.
//! `dmavm-iommu`'s `translated_blk` benchmark runs the same requests
//! through the virtual IOMMU.
//!
//! `cargo bench -p dmavm-devices --features test-utils --bench blk_throughput`
//! runs each case for
//! `DMAVM_BENCH_SECS` seconds (default 3, after a 0.5 s warm-up) and prints
//! Markdown table rows for docs/benchmarks.md. Run without `--bench` (as
//! `cargo test --all-targets` does) it only checks one round of each case.

use dmavm_devices::test_utils::blk_bench::backing::{pread_baseline, Backing, DISK_SIZE};
use dmavm_devices::test_utils::blk_bench::driver::{run_case, Memory, CASES, MEM_SIZE};
use dmavm_devices::test_utils::blk_bench::report::{host, measure_time, utc_now};
use dmavm_devices::test_utils::blk_bench::Result;

fn main() -> Result<()> {
    let measure = measure_time();
    let (backing, file) = Backing::create()?;
    let mut rows = Vec::new();
    for (layout, size) in CASES {
        let o = run_case(&file, &Memory::direct()?, layout, size, measure)?;
        if measure.is_some() {
            rows.push(o.row(layout, size, &[]));
        }
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
    println!();
    println!(
        "{}: virtio-blk device model, reads, {} MiB guest memory, 256-entry queue, {} MiB disk, {}; {}; \
         {} s per case",
        utc_now(),
        MEM_SIZE >> 20,
        DISK_SIZE >> 20,
        backing.describe(),
        host(),
        measure.as_secs_f64(),
    );
    println!();
    println!("| request size | layout | requests per notification | requests/s | MiB/s | ns/request | interrupts per notification |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
