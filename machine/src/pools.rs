//! Where restricted DMA pools go in guest RAM.
//!
//! Pools are carved from the top of RAM downwards, each aligned to
//! [`POOL_ALIGN`], host bridges' pools first (in segment order), then the
//! devices' own (in the machine's device order), so the same options
//! always give the same addresses and no two pools overlap. Everything the
//! arm64 back end loads (kernel at the start of RAM, initrd and device
//! tree at the top of the boot window) stays below the lowest pool: see
//! [`crate::dt::boot_top`]. Whether the pools leave the guest enough RAM is
//! the checks' to say (DMA013), so that `describe` shows such a machine.

use crate::arch::Arch;
use crate::dma::POOL_ALIGN;

/// The top of the RAM range pools are carved from: the end of `arch`'s
/// highest RAM range for `memory` bytes.
pub(crate) fn ram_top(arch: Arch, memory: u64) -> u64 {
    arch.ram_ranges(memory).last().map_or(0, |&(base, size)| base.saturating_add(size))
}

/// The bottom of the RAM range pools are carved from.
pub(crate) fn ram_floor(arch: Arch, memory: u64) -> u64 {
    arch.ram_ranges(memory).last().map_or(0, |&(base, _)| base)
}

/// The bases of pools of `sizes` bytes, in order, from the top of RAM
/// down. A pool that does not fit gets base 0 (below every RAM floor, so
/// the checks refuse it).
pub(crate) fn place(arch: Arch, memory: u64, sizes: &[u64]) -> Vec<u64> {
    let floor = ram_floor(arch, memory);
    let mut top = ram_top(arch, memory);
    sizes
        .iter()
        .map(|&size| {
            let base = top.checked_sub(size).map(|b| b & !(POOL_ALIGN - 1)).filter(|&b| b >= floor);
            match base {
                Some(b) => {
                    top = b;
                    b
                }
                None => {
                    top = 0;
                    0
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::aarch64::RAM_START;

    #[test]
    fn pools_stack_down_from_the_top_of_ram_aligned_and_apart() {
        let m = 1 << 30;
        let bases = place(Arch::Aarch64, m, &[4 << 20, 256 << 10, 3 << 20]);
        assert_eq!(bases, [RAM_START + m - (4 << 20), RAM_START + m - (6 << 20), RAM_START + m - (10 << 20)]);
        for b in &bases {
            assert_eq!(b % POOL_ALIGN, 0);
        }
        // Each pool ends at or below the base of the one above it.
        let sizes = [4 << 20, 256 << 10, 3 << 20];
        for i in 1..bases.len() {
            assert!(bases[i] + sizes[i] <= bases[i - 1], "pool {i} overlaps pool {}", i - 1);
        }
        assert_eq!(ram_top(Arch::Aarch64, m), RAM_START + m);
    }

    #[test]
    fn a_pool_that_does_not_fit_gets_no_place_in_ram() {
        let m = 8 << 20;
        assert_eq!(
            place(Arch::Aarch64, m, &[4 << 20, 4 << 20, 2 << 20]),
            [RAM_START + (4 << 20), RAM_START, 0]
        );
        assert_eq!(place(Arch::Aarch64, m, &[u64::MAX]), [0]);
        // x86_64: carved from the highest RAM range (above 4 GiB here).
        let bases = place(Arch::X86_64, 8 << 30, &[2 << 20]);
        assert_eq!(bases[0] + (2 << 20), ram_top(Arch::X86_64, 8 << 30));
    }
}
