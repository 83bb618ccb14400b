//! Timing of single operations for the translation benchmarks: a call
//! repeated in batches, a translation walked as a device model's access
//! walks it, and what an access through translated memory costs beyond
//! the same access direct.

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, Iommu, Permissions};

/// Nanoseconds per call of `f` (given the call's number), called in
/// batches of `batch` until `measure` has passed; at least one batch, so
/// that a zero `measure` (a test run) still checks the operation once.
pub fn ns_per_call<E>(
    measure: Duration,
    batch: u64,
    mut f: impl FnMut(u64) -> Result<(), E>,
) -> Result<f64, E> {
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        for i in 0..batch {
            f(calls + i)?;
        }
        calls += batch;
        if start.elapsed() >= measure {
            break;
        }
    }
    Ok(start.elapsed().as_nanos() as f64 / calls.max(1) as f64)
}

/// Translates `len` bytes at `iova` for reading and walks the ranges, as
/// a device model's access does.
pub fn translate(endpoint: &impl Iommu, iova: u64, len: usize) -> Result<(), String> {
    let ranges = endpoint.translate(GuestAddress(iova), len, Permissions::Read).map_err(|e| e.to_string())?;
    for r in ranges {
        std::hint::black_box(r);
    }
    Ok(())
}

/// Nanoseconds of an 8-byte `read_obj` at `addr` of `mem`.
fn small_read_ns(measure: Duration, mem: &impl GuestMemory, addr: u64) -> Result<f64, GuestMemoryError> {
    ns_per_call(measure, 1024, |_| {
        std::hint::black_box(mem.read_obj::<u64>(GuestAddress(addr))?);
        Ok(())
    })
}

/// Nanoseconds of an 8-byte `read_obj` at `iova` through `translated`,
/// and of the same read at `phys` of `direct`: what a device model pays
/// for a small access behind the IOMMU is the difference.
pub fn small_read_costs(
    measure: Duration,
    translated: &impl GuestMemory,
    iova: u64,
    direct: &impl GuestMemory,
    phys: u64,
) -> Result<(f64, f64), GuestMemoryError> {
    Ok((small_read_ns(measure, translated, iova)?, small_read_ns(measure, direct, phys)?))
}
