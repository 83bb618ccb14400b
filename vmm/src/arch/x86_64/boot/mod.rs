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

use std::path::Path;

use anyhow::{bail, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::{CMDLINE_ADDR, CMDLINE_MAX, MMIO_HOLE_START};
use bzimage_pvh::{BzImageEntry, ElfImage};
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
    load_with_cache(boot, mem, ElfCache::user().as_ref())
}

/// [`load`] with `cache` for decompressed bzImage payloads.
fn load_with_cache(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap, cache: Option<&ElfCache>) -> Result<Entry> {
    let shown = boot.kernel.display();
    match kernel_image::check_image(boot.kernel)? {
        ImageKind::BzImage => {
            let entry = bzimage_pvh::choose(boot.kernel, cache)?;
            if let BzImageEntry::Pvh { elf: mut elf @ ElfImage::Cached(_), source } = entry {
                match pvh::load_elf(boot, mem, &mut elf) {
                    Ok(entry) => {
                        log::info!("kernel {shown}: bzImage entered through PVH ({source})");
                        return Ok(entry);
                    }
                    // A damaged cache entry costs a decompression, never the boot.
                    Err(e) => log::info!("kernel {shown}: the cached ELF did not load ({e}); decompressing"),
                }
                return load_bzimage(boot, mem, bzimage_pvh::choose(boot.kernel, None)?);
            }
            load_bzimage(boot, mem, entry)
        }
        ImageKind::Elf => {
            log::info!("kernel {shown}: ELF vmlinux entered through PVH");
            pvh::load(boot, mem)
        }
    }
}

/// Loads a bzImage the way `entry` says.
fn load_bzimage(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap, entry: BzImageEntry) -> Result<Entry> {
    let shown = boot.kernel.display();
    match entry {
        BzImageEntry::Pvh { mut elf, source } => {
            log::info!("kernel {shown}: bzImage entered through PVH ({source})");
            pvh::load_elf(boot, mem, &mut elf)
        }
        BzImageEntry::Long64 { reason } => {
            log::info!("kernel {shown}: bzImage entered through the 64-bit boot protocol: {reason}");
            bzimage::load(boot, mem)
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

#[cfg(test)]
mod tests {
    use std::fs;

    use vm_memory::GuestAddress;

    use super::bzimage_payload::tests::synthetic_bzimage;
    use super::decompress::tests::{compress, sample};
    use super::decompress::Compression;
    use super::pvh_note::tests::pvh_elf;
    use super::*;

    #[test]
    fn a_damaged_cache_entry_is_decompressed_anew() {
        let d = std::env::temp_dir().join(format!("dmavm-boot-load-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let cache = ElfCache::at(d.join("cache"));
        let elf = pvh_elf(0x100_0040, &sample(4096));
        let kernel = d.join("vmlinuz");
        fs::write(&kernel, synthetic_bzimage(&compress(Compression::Zstd, &elf), elf.len())).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let boot = LinuxBoot {
            kernel: &kernel,
            initrd: None,
            cmdline: "quiet",
            memory: 64 << 20,
            rsdp: 0xe0000,
            reserved: &[],
        };
        let pvh = Entry::Pvh32 { rip: 0x100_0040, ebx: crate::arch::layout::PVH_START_INFO };

        // Decompressed and cached.
        assert_eq!(load_with_cache(&boot, &mem, Some(&cache)).unwrap(), pvh);
        // Served from the cache: an entry put there with another entry
        // point shows it was the one loaded.
        let key = elf_cache::Key::new(&kernel, &fs::metadata(&kernel).unwrap());
        let other = pvh_elf(0x100_0080, &sample(4096));
        cache.put(&key, &elf_cache::CachedRef::PvhElf(&other)).unwrap();
        let from_cache = Entry::Pvh32 { rip: 0x100_0080, ebx: crate::arch::layout::PVH_START_INFO };
        assert_eq!(load_with_cache(&boot, &mem, Some(&cache)).unwrap(), from_cache);
        // The cached ELF's magic damaged, its length intact: loading it
        // fails, and the payload is decompressed again.
        let entry = fs::read_dir(cache.dir()).unwrap().next().unwrap().unwrap().path();
        let mut bytes = fs::read(&entry).unwrap();
        let elf_at = bytes.len() - other.len();
        bytes[elf_at] = b'X';
        fs::write(&entry, &bytes).unwrap();
        assert_eq!(load_with_cache(&boot, &mem, Some(&cache)).unwrap(), pvh);
        fs::remove_dir_all(&d).unwrap();
    }
}
