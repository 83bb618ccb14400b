//! Placing the initial ramdisk.

use std::path::Path;

use anyhow::{bail, Context, Result};
use dmavm_machine::input_file::{self, Purpose};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where an initrd was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initrd {
    /// Guest-physical start.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The highest page-aligned address where `size` bytes fit between
/// `floor` (the end of the kernel) and `ceiling` (exclusive).
pub fn placement(size: u64, floor: u64, ceiling: u64) -> Option<u64> {
    let start = ceiling.checked_sub(size)? & !0xfff;
    (start >= floor).then_some(start)
}

/// Loads `path` as high as possible below `ceiling` and above `floor`.
pub fn load(path: &Path, mem: &GuestMemoryMmap, floor: u64, ceiling: u64) -> Result<Initrd> {
    let image = input_file::read(path, Purpose::Initrd)?;
    let size = image.len() as u64;
    let Some(addr) = placement(size, floor, ceiling) else {
        bail!(
            "initrd {} ({} MiB) does not fit in guest memory: {} MiB free between the kernel and {ceiling:#x}; \
             give more --memory",
            path.display(),
            size.div_ceil(1 << 20),
            ceiling.saturating_sub(floor) >> 20
        );
    };
    mem.write_slice(&image, GuestAddress(addr)).context("writing the initrd into guest memory")?;
    Ok(Initrd { addr, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_high_and_aligned() {
        assert_eq!(placement(0x1800, 0x1000, 0x10_0000), Some(0xfe000));
        assert_eq!(placement(0x1000, 0x1000, 0x2000), Some(0x1000));
        assert_eq!(placement(0x1001, 0x1000, 0x2000), None);
        assert_eq!(placement(u64::MAX, 0, 0x2000), None);
    }
}
