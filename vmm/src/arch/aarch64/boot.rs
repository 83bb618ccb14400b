//! Loading an arm64 Linux `Image` and its initrd
//! (Documentation/arch/arm64/booting.rst).
//!
//! The Image starts with a 64-byte header: `text_offset` (u64 at 8) and
//! `image_size` (u64 at 16, the memory the kernel needs including its BSS),
//! `flags` (u64 at 24; bit 0 set means big-endian), the magic "ARM\x64" at
//! 56. It is loaded `text_offset` bytes above a 2 MiB aligned base (here the
//! start of RAM) and entered at its first byte.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use dmavm_fdt::MemoryRange;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::RAM_START;
use dmavm_machine::input_file::{self, Purpose};

/// "ARM\x64", little-endian, at offset 56.
const IMAGE_MAGIC: u32 = 0x644d_5241;
const HEADER_LEN: usize = 64;
/// `text_offset` of kernels older than 3.17, whose header has
/// `image_size` 0 (booting.rst).
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// What the header of an Image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes the kernel occupies once running (file plus BSS).
    pub image_size: u64,
}

fn le64(header: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Parses the header; `None` when `header` is not a little-endian arm64
/// Image's.
pub fn parse_header(header: &[u8], file_len: u64) -> Option<ImageHeader> {
    if header.len() < HEADER_LEN {
        return None;
    }
    let magic = u32::from_le_bytes([header[56], header[57], header[58], header[59]]);
    if magic != IMAGE_MAGIC || le64(header, 24) & 1 != 0 {
        return None;
    }
    let (text_offset, image_size) = match le64(header, 16) {
        0 => (LEGACY_TEXT_OFFSET, file_len),
        size => (le64(header, 8), size.max(file_len)),
    };
    Some(ImageHeader { text_offset, image_size })
}

/// A loaded kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// Where it is entered (its first byte).
    pub entry: u64,
    /// First address above what it occupies once running.
    pub end: u64,
}

/// Loads the Image at `path` into `mem`, below `ceiling`.
pub fn load_kernel(path: &Path, mem: &GuestMemoryMmap, ceiling: u64) -> Result<Kernel> {
    let mut file = input_file::open(path, Purpose::Kernel)?;
    let mut image = Vec::new();
    file.read_to_end(&mut image).with_context(|| format!("cannot read kernel {}", path.display()))?;
    let Some(header) = parse_header(&image, image.len() as u64) else {
        bail!(
            "kernel {} is not an arm64 Image (no little-endian \"ARM\\x64\" header; a vmlinuz may need gunzip)",
            path.display()
        );
    };
    let entry = RAM_START.checked_add(header.text_offset).context("kernel text_offset out of range")?;
    let end = entry.checked_add(header.image_size).context("kernel image_size out of range")?;
    if end > ceiling {
        bail!(
            "kernel {} needs {} MiB from {entry:#x}; guest memory ends (for the kernel) at {ceiling:#x}: \
             give more --memory",
            path.display(),
            header.image_size.div_ceil(1 << 20)
        );
    }
    mem.write_slice(&image, GuestAddress(entry)).context("writing the kernel into guest memory")?;
    Ok(Kernel { entry, end })
}

/// Loads the initrd at `path` as high as possible, page aligned, between
/// `floor` and `ceiling`.
pub fn load_initrd(path: &Path, mem: &GuestMemoryMmap, floor: u64, ceiling: u64) -> Result<MemoryRange> {
    let image = input_file::read(path, Purpose::Initrd)?;
    let size = image.len() as u64;
    let addr = ceiling.checked_sub(size).map(|a| a & !0xfff).filter(|&a| a >= floor);
    let Some(addr) = addr else {
        bail!(
            "initrd {} ({} MiB) does not fit in guest memory: {} MiB free between the kernel and {ceiling:#x}; \
             give more --memory",
            path.display(),
            size.div_ceil(1 << 20),
            ceiling.saturating_sub(floor) >> 20
        );
    };
    mem.write_slice(&image, GuestAddress(addr)).context("writing the initrd into guest memory")?;
    Ok(MemoryRange::new(addr, size))
}
