//! Loading Linux: the PVH entry for an ELF vmlinux and for a bzImage whose
//! payload is one, the 64-bit boot protocol for any other bzImage; command
//! line, initrd and memory map.

pub mod bzimage;
pub mod bzimage_payload;
pub mod bzimage_pvh;
pub mod decompress;
pub mod e820;
pub mod elf_cache;
pub mod initrd;
pub mod kernel_image;
pub mod pvh;
pub mod pvh_note;

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::{CMDLINE_ADDR, CMDLINE_MAX, MMIO_HOLE_START};
use bzimage_pvh::BzImageEntry;
use elf_cache::ElfCache;
use kernel_image::ImageKind;

/// How a vCPU enters the loaded kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 64-bit long mode at `rip` with the zero page in `rsi` (bzImage).
    Long64 {
        /// `startup_64`.
        rip: u64,
        /// The zero page.
        rsi: u64,
    },
    /// 32-bit protected mode, paging off, at `rip` with the
    /// `hvm_start_info` in `ebx` (PVH).
    Pvh32 {
        /// The PVH entry point from the ELF note.
        rip: u64,
        /// The start info.
        ebx: u64,
    },
}

/// What to boot.
#[derive(Debug)]
pub struct LinuxBoot<'a> {
    /// bzImage or ELF vmlinux.
    pub kernel: &'a Path,
    /// Initial ramdisk.
    pub initrd: Option<&'a Path>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Guest RAM size.
    pub memory: u64,
    /// Guest-physical address of the ACPI RSDP.
    pub rsdp: u64,
    /// MMIO ranges (start, length) the memory map marks reserved: every
    /// PCI segment's ECAM.
    pub reserved: &'a [(u64, u64)],
}

/// Loads the kernel, initrd and command line; returns the boot vCPU's entry.
pub fn load(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap) -> Result<Entry> {
    let shown = boot.kernel.display();
    match kernel_image::check_image(boot.kernel)? {
        ImageKind::BzImage => match bzimage_pvh::choose(boot.kernel, ElfCache::user().as_ref())? {
            BzImageEntry::Pvh { elf, source } => {
                log::info!("kernel {shown}: bzImage entered through PVH ({source})");
                pvh::load_elf(boot, mem, &mut Cursor::new(elf))
            }
            BzImageEntry::Long64 { reason } => {
                log::info!("kernel {shown}: bzImage entered through the 64-bit boot protocol: {reason}");
                bzimage::load(boot, mem)
            }
        },
        ImageKind::Elf => {
            log::info!("kernel {shown}: ELF vmlinux entered through PVH");
            pvh::load(boot, mem)
        }
    }
}

/// Writes the NUL-terminated command line, checking the kernel's limit
/// (`max` bytes including the terminator).
fn write_cmdline(cmdline: &str, max: u64, mem: &GuestMemoryMmap) -> Result<()> {
    let len = cmdline.len() as u64 + 1;
    let max = max.min(CMDLINE_MAX);
    if len > max {
        bail!("the kernel command line is {} bytes; this kernel accepts at most {}", cmdline.len(), max - 1);
    }
    if cmdline.contains('\0') {
        bail!("the kernel command line contains a NUL byte");
    }
    mem.write_slice(cmdline.as_bytes(), GuestAddress(CMDLINE_ADDR))?;
    mem.write_obj(0u8, GuestAddress(CMDLINE_ADDR + cmdline.len() as u64))?;
    Ok(())
}

/// End of RAM below 4 GiB, the ceiling for the initrd.
fn low_ram_end(memory: u64) -> u64 {
    memory.min(MMIO_HOLE_START)
}
