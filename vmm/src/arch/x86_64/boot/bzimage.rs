//! The x86 64-bit boot protocol (Documentation/arch/x86/boot.rst): the
//! protected-mode kernel at `code32_start`, the zero page in `rsi`, entry
//! at the load address + 0x200 (`startup_64`) in long mode with identity
//! page tables.

use anyhow::{anyhow, Context, Result};
use linux_loader::loader::bootparam::{boot_params, CAN_USE_HEAP};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::e820::memory_map;
use super::{initrd, low_ram_end, write_cmdline, Entry, LinuxBoot};
use crate::arch::layout::{CMDLINE_ADDR, HIGH_MEMORY_START, ZERO_PAGE};
use dmavm_machine::input_file::{self, Purpose};

/// Boot loader ID "undefined" (boot.rst, `type_of_loader`).
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `initrd_addr_max` for protocols before 2.03.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// The command line limit for protocols before 2.06 (no `cmdline_size`).
const DEFAULT_CMDLINE_SIZE: u64 = 256;
/// Offset of `startup_64` from the load address.
const STARTUP_64_OFFSET: u64 = 0x200;

pub(super) fn load(boot: &LinuxBoot<'_>, mem: &GuestMemoryMmap) -> Result<Entry> {
    let mut file = input_file::open(boot.kernel, Purpose::Kernel)?;
    let loaded = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIGH_MEMORY_START)))
        .map_err(|e| anyhow!("cannot load bzImage {}: {e}", boot.kernel.display()))?;
    let mut hdr = loaded
        .setup_header
        .ok_or_else(|| anyhow!("bzImage {} has no setup header", boot.kernel.display()))?;

    let cmdline_max =
        if hdr.version >= 0x0206 { u64::from(hdr.cmdline_size) + 1 } else { DEFAULT_CMDLINE_SIZE };
    write_cmdline(boot.cmdline, cmdline_max, mem)?;
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    hdr.cmdline_size = boot.cmdline.len() as u32;
    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= CAN_USE_HEAP;

    if let Some(path) = boot.initrd {
        let load = loaded.kernel_load.0;
        // The kernel decompresses itself in place up to `init_size` bytes
        // from its load address; the initrd must stay clear of that.
        let floor = (load + u64::from(hdr.init_size)).max(loaded.kernel_end);
        let addr_max =
            if hdr.version >= 0x0203 { u64::from(hdr.initrd_addr_max) } else { DEFAULT_INITRD_ADDR_MAX };
        let ceiling = low_ram_end(boot.memory).min(addr_max.saturating_add(1));
        let rd = initrd::load(path, mem, floor, ceiling)?;
        hdr.ramdisk_image = rd.addr as u32;
        hdr.ramdisk_size = rd.size as u32;
    }

    let mut params = boot_params { hdr, acpi_rsdp_addr: boot.rsdp, ..Default::default() };
    let map = memory_map(boot.memory, boot.reserved);
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        slot.addr = e.addr;
        slot.size = e.size;
        slot.r#type = e.kind;
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE)).context("writing the zero page")?;
    Ok(Entry::Long64 { rip: loaded.kernel_load.0 + STARTUP_64_OFFSET, rsi: ZERO_PAGE })
}
