//! The state a vCPU starts in, without firmware.
//!
//! - 64-bit long mode: a flat GDT, identity page tables for the first 4 GiB
//!   and paging on. Test payloads and Linux's 64-bit boot protocol start
//!   this way (boot.rst, "64-bit BOOT PROTOCOL": identity mapping,
//!   `__BOOT_CS` 0x10 / `__BOOT_DS` 0x18 flat segments, interrupts off).
//! - 32-bit protected mode with paging off, for the PVH entry (pvh.html:
//!   flat 4 GiB CS/DS, `ebx` = start info, CR0.PE set, CR4 and EFER clear).

use anyhow::{Context, Result};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::{BOOT_GDT, BOOT_PD, BOOT_PDPT, BOOT_PML4};

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
/// Flat 32-bit code selector, for the PVH entry.
pub const CODE32_SELECTOR: u16 = 0x20;

/// GDT descriptors: null, null, 64-bit code, flat data, 32-bit code (Intel
/// SDM vol. 3, 3.4.5: base 0, limit 0xfffff with 4 KiB granularity).
const GDT: [u64; 5] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x00cf_9b00_0000_ffff];

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
    set_segments_and_fpu(vcpu, segment(CODE_SELECTOR, 0xb, true), |sregs| {
        sregs.cr3 = BOOT_PML4;
        // Assigned, not OR-ed: KVM's reset CR0 (0x60000010) has CD and NW
        // set, and a decompressor left running with caches disabled was
        // measured 5x slower (bzImage boots 7.7 s instead of 3.5 s in the
        // sandbox) until the kernel proper rewrites CR0.
        sregs.cr4 = CR4_PAE;
        sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA;
    })?;
    set_regs(vcpu, entry)
}

/// Puts `vcpu` into 32-bit protected mode, paging off, at `rip` with
/// `ebx` (the PVH start info) as the only argument.
pub fn enter_pvh(vcpu: &VcpuFd, rip: u64, ebx: u64) -> Result<()> {
    set_segments_and_fpu(vcpu, segment(CODE32_SELECTOR, 0xb, false), |sregs| {
        sregs.cr0 = CR0_PE | CR0_ET;
        sregs.cr4 = 0;
        sregs.efer = 0;
    })?;
    let regs = kvm_regs { rip, rbx: ebx, rflags: 0x2, ..Default::default() };
    vcpu.set_regs(&regs).context("KVM_SET_REGS")
}

/// x87 control word and MXCSR after FINIT / reset (SDM vol. 1, 8.1.5 and
/// 10.2.3.1): all exceptions masked.
fn init_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).context("KVM_SET_FPU")
}

fn set_segments_and_fpu(vcpu: &VcpuFd, code: kvm_segment, mode: impl FnOnce(&mut kvm_sregs)) -> Result<()> {
    init_fpu(vcpu)?;
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
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
    mode(&mut sregs);
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")
}

fn set_regs(vcpu: &VcpuFd, entry: EntryState) -> Result<()> {
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
