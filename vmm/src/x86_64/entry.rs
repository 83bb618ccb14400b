//! Putting a vCPU straight into 64-bit long mode: a flat GDT, identity page
//! tables for the first 4 GiB, and the control registers that enable paging.
//!
//! Both the test payloads and (later) the Linux 64-bit boot protocol start
//! this way; the Linux protocol asks for exactly this state (boot.rst,
//! "64-bit BOOT PROTOCOL": identity mapping, `__BOOT_CS`/`__BOOT_DS`
//! flat segments, interrupts off).

use anyhow::{Context, Result};
use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{BOOT_GDT, BOOT_PD, BOOT_PDPT, BOOT_PML4};

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITE: u64 = 1 << 1;
const PDE_LARGE: u64 = 1 << 7;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Selectors Linux's boot protocol expects (`__BOOT_CS` = 0x10,
/// `__BOOT_DS` = 0x18): GDT entry 1 stays null.
pub const CODE_SELECTOR: u16 = 0x10;
/// Flat data selector.
pub const DATA_SELECTOR: u16 = 0x18;

/// GDT descriptors: null, null, 64-bit code, flat data (Intel SDM vol. 3,
/// 3.4.5: base 0, limit 0xfffff with 4 KiB granularity).
const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// Writes the GDT and the identity page tables into guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<()> {
    for (i, d) in GDT.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(BOOT_GDT + 8 * i as u64)).context("writing the boot GDT")?;
    }
    mem.write_obj(BOOT_PDPT | PTE_PRESENT | PTE_WRITE, GuestAddress(BOOT_PML4))
        .context("writing the boot PML4")?;
    // Four page directories of 512 2 MiB pages each: 0..4 GiB, so payloads
    // reach the MMIO hole (IOAPIC, LAPIC) as well as RAM.
    let mut table = [0u8; 4096 * 4];
    for (i, chunk) in table.chunks_exact_mut(8).enumerate() {
        let entry = ((i as u64) << 21) | PTE_PRESENT | PTE_WRITE | PDE_LARGE;
        chunk.copy_from_slice(&entry.to_le_bytes());
    }
    mem.write_slice(&table, GuestAddress(BOOT_PD)).context("writing the boot page directories")?;
    for i in 0..4u64 {
        let pd = BOOT_PD + i * 4096;
        mem.write_obj(pd | PTE_PRESENT | PTE_WRITE, GuestAddress(BOOT_PDPT + i * 8))
            .context("writing the boot PDPT")?;
    }
    Ok(())
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Entry state for one vCPU: where it starts and what it finds in the
/// argument registers.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryState {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// First argument register.
    pub rdi: u64,
    /// Second argument register.
    pub rsi: u64,
}

/// Puts `vcpu` into long mode at `entry` with interrupts disabled.
pub fn enter_long_mode(vcpu: &VcpuFd, entry: EntryState) -> Result<()> {
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
    let code = segment(CODE_SELECTOR, 0xb, true);
    let data = segment(DATA_SELECTOR, 0x3, false);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    // An empty IDT: any exception before the guest installs its own is a
    // triple fault, which dmavm reports, rather than a jump into garbage.
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = BOOT_PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")?;

    let regs = kvm_regs {
        rip: entry.rip,
        rsp: entry.rsp,
        rdi: entry.rdi,
        rsi: entry.rsi,
        rflags: 0x2, // bit 1 is reserved-one; IF clear
        ..Default::default()
    };
    vcpu.set_regs(&regs).context("KVM_SET_REGS")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables_identity_map_4g() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(BOOT_PML4)).unwrap();
        assert_eq!(pml4 & !0xfff, BOOT_PDPT);
        // Walk for an address in the IOAPIC page: PDPT index 3, PD index 502.
        let va: u64 = 0xfec0_0000;
        let pdpte: u64 = mem.read_obj(GuestAddress(BOOT_PDPT + 8 * (va >> 30))).unwrap();
        let pde: u64 = mem.read_obj(GuestAddress((pdpte & !0xfff) + 8 * ((va >> 21) & 0x1ff))).unwrap();
        assert_eq!(pde & !0x1f_ffff, va & !0x1f_ffff);
        assert_eq!(pde & 0x83, 0x83);
    }
}
