//! The PVH boot protocol (xenbits "pvh.html", used by Linux since 4.21 for
//! an uncompressed vmlinux with a `XEN_ELFNOTE_PHYS32_ENTRY` note): the ELF
//! is loaded at its physical addresses, and the boot vCPU starts at the
//! note's entry in 32-bit protected mode with paging off and `ebx` pointing
//! at an `hvm_start_info`.

use std::io::{Read, Seek};

use anyhow::{anyhow, bail, Context, Result};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use super::e820::memory_map;
use super::{initrd, low_ram_end, write_cmdline, Entry, LinuxBoot};
use crate::arch::layout::{CMDLINE_ADDR, HIGH_MEMORY_START, PVH_START_INFO, ZERO_PAGE};
use dmavm_machine::input_file::{self, Purpose};

/// `XEN_HVM_START_MAGIC_VALUE`.
const START_MAGIC: u32 = 0x336e_c578;
/// Linux's x86 `COMMAND_LINE_SIZE`: PVH has no header to say otherwise.
const PVH_CMDLINE_SIZE: u64 = 2048;

pub(super) fn load(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap) -> Result<Entry> {
    let mut file = input_file::open(boot.kernel, Purpose::Kernel)?;
    load_elf(boot, mem, &mut file)
}

/// Loads the ELF `image` (the file `boot.kernel` or what its payload
/// decompressed to) and the boot information.
pub(super) fn load_elf<F>(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap, image: &mut F) -> Result<Entry>
where
    F: Read + ReadVolatile + Seek,
{
    let loaded = Elf::load(mem, None, image, Some(GuestAddress(HIGH_MEMORY_START)))
        .map_err(|e| anyhow!("cannot load ELF kernel {}: {e}", boot.kernel.display()))?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        bail!(
            "ELF kernel {} has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); boot its bzImage instead",
            boot.kernel.display()
        );
    };
    write_cmdline(boot.cmdline, PVH_CMDLINE_SIZE, mem)?;

    let map: Vec<hvm_memmap_table_entry> = memory_map(boot.memory, boot.reserved)
        .into_iter()
        .map(|e| hvm_memmap_table_entry { addr: e.addr, size: e.size, type_: e.kind, reserved: 0 })
        .collect();
    let info_size = std::mem::size_of::<hvm_start_info>() as u64;
    let memmap_addr = PVH_START_INFO + info_size.next_multiple_of(8);
    let modlist_addr = memmap_addr + (map.len() * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
    if modlist_addr + std::mem::size_of::<hvm_modlist_entry>() as u64 > ZERO_PAGE {
        bail!("the PVH start info does not fit below {ZERO_PAGE:#x}");
    }

    let mut info = hvm_start_info {
        magic: START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: boot.rsdp,
        memmap_paddr: memmap_addr,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    for (i, e) in map.iter().enumerate() {
        let at = memmap_addr + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_slice(e.as_slice(), GuestAddress(at)).context("writing the PVH memory map")?;
    }
    if let Some(path) = boot.initrd {
        let rd = initrd::load(path, mem, loaded.kernel_end, low_ram_end(boot.memory))?;
        let module = hvm_modlist_entry { paddr: rd.addr, size: rd.size, ..Default::default() };
        mem.write_slice(module.as_slice(), GuestAddress(modlist_addr))
            .context("writing the PVH module list")?;
        info.nr_modules = 1;
        info.modlist_paddr = modlist_addr;
    }
    mem.write_slice(info.as_slice(), GuestAddress(PVH_START_INFO)).context("writing the PVH start info")?;
    Ok(Entry::Pvh32 { rip: entry.0, ebx: PVH_START_INFO })
}
