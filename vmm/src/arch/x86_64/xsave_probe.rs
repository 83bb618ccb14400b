//! Does KVM see the guest's `XSETBV`? A measured rule for hiding XSAVE.
//!
//! KVM reports the XSAVE area size of the guest's *current* XCR0 in CPUID
//! leaf 0xD.0 EBX, recomputed when the guest's `XSETBV` exits to it. On
//! hardware that exit always happens (VMX and SVM both intercept
//! `XSETBV`). In the project's nested test bed (L1 KVM on QEMU's emulated
//! SVM) it does not: the L2 `XSETBV` never reaches L1's KVM, leaf 0xD.0
//! keeps describing XCR0 = x87 only (576 bytes), and a stock kernel stops
//! using XSAVE with "XSAVE consistency problem: size 2696 != kernel_size
//! 576" and a WARNING backtrace (measured in the sandbox).
//!
//! So before booting Linux, dmavm runs `XSETBV` in a scratch VM and reads
//! XCR0 back through KVM. Only if KVM did not see it, the guest's CPUID
//! hides XSAVE (and with it AVX; the kernel falls back to FXSAVE), which is
//! the truthful description of that host. The scratch VM has one vCPU, no
//! irqchip and one page of RAM, and costs about a millisecond.

use anyhow::{Context, Result};
use kvm_bindings::{kvm_userspace_memory_region, CpuId};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::entry::{enter_long_mode, write_boot_tables, EntryState};
use crate::arch::layout::PAYLOAD_ADDR;

/// Leaf 1 ECX: XSAVE, OSXSAVE, AVX.
const ECX_XSAVE: u32 = 1 << 26;
const ECX_OSXSAVE: u32 = 1 << 27;
const ECX_AVX: u32 = 1 << 28;
const CR4_OSXSAVE: u64 = 1 << 18;
/// Port the probe writes to when done (the POST-code port; nothing else
/// runs in the scratch VM).
const DONE_PORT: u16 = 0x80;

/// The XCR0 (x87, SSE and every supported extended state) the probe sets.
fn supported_xcr0(cpuid: &CpuId) -> Option<u64> {
    let leaf1 = cpuid.as_slice().iter().find(|e| e.function == 1)?;
    if leaf1.ecx & ECX_XSAVE == 0 {
        return None;
    }
    let d = cpuid.as_slice().iter().find(|e| e.function == 0xd && e.index == 0)?;
    Some((u64::from(d.edx) << 32) | u64::from(d.eax))
}

/// `mov eax, lo; mov edx, hi; xor ecx, ecx; xsetbv; out 0x80, al; hlt`.
fn probe_code(xcr0: u64) -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&(xcr0 as u32).to_le_bytes());
    code.push(0xba);
    code.extend_from_slice(&((xcr0 >> 32) as u32).to_le_bytes());
    code.extend_from_slice(&[0x31, 0xc9, 0x0f, 0x01, 0xd1, 0xe6, DONE_PORT as u8, 0xf4]);
    code
}

/// Whether a guest `XSETBV` of the full supported XCR0 is seen by KVM;
/// `true` when the guest gets no XSAVE anyway.
pub fn kvm_sees_guest_xsetbv(kvm: &Kvm, cpuid: &CpuId) -> Result<bool> {
    let Some(xcr0) = supported_xcr0(cpuid) else { return Ok(true) };
    let vm = kvm.create_vm().context("creating the XSAVE probe VM")?;
    // Room for the boot GDT and page tables (below 64 KiB) and the code.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_1000)])
        .context("mapping the XSAVE probe's memory")?;
    write_boot_tables(&mem)?;
    mem.write_slice(&probe_code(xcr0), GuestAddress(PAYLOAD_ADDR)).context("writing the XSAVE probe")?;
    for region in mem.iter() {
        let slot = kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping of `memory_size` bytes owned
        // by `mem`, which outlives `vm` (declared before it, dropped after).
        unsafe { vm.set_user_memory_region(slot) }.context("registering the XSAVE probe's memory")?;
    }
    let mut vcpu = vm.create_vcpu(0).context("creating the XSAVE probe vCPU")?;
    vcpu.set_cpuid2(cpuid).context("setting the XSAVE probe's CPUID")?;
    enter_long_mode(&vcpu, EntryState { rip: PAYLOAD_ADDR, ..Default::default() })?;
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
    sregs.cr4 |= CR4_OSXSAVE;
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")?;
    let finished = matches!(vcpu.run(), Ok(VcpuExit::IoOut(DONE_PORT, _)));
    if !finished {
        log::debug!("XSAVE probe: XSETBV of {xcr0:#x} did not complete");
        return Ok(false);
    }
    let seen = vcpu.get_xcrs().context("KVM_GET_XCRS")?;
    let value = seen.xcrs.iter().take(seen.nr_xcrs as usize).find(|x| x.xcr == 0).map(|x| x.value);
    log::debug!("XSAVE probe: guest set XCR0 {xcr0:#x}, KVM sees {value:x?}");
    Ok(value == Some(xcr0))
}

/// Removes XSAVE from `cpuid`: leaf 1's XSAVE, OSXSAVE and AVX bits and the
/// whole of leaf 0xD. Features that need XSAVE (AVX2, AVX-512, ...) are
/// then dropped by the guest kernel's own CPUID dependency rules.
pub fn hide_xsave(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ecx &= !(ECX_XSAVE | ECX_OSXSAVE | ECX_AVX),
            0xd => (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn cpuid(leaf1_ecx: u32, xcr0: u64) -> CpuId {
        CpuId::from_entries(&[
            kvm_cpuid_entry2 { function: 1, ecx: leaf1_ecx, ..Default::default() },
            kvm_cpuid_entry2 {
                function: 0xd,
                index: 0,
                eax: xcr0 as u32,
                edx: (xcr0 >> 32) as u32,
                ebx: 2696,
                ..Default::default()
            },
        ])
        .unwrap()
    }

    #[test]
    fn xcr0_comes_from_leaf_0xd() {
        assert_eq!(supported_xcr0(&cpuid(ECX_XSAVE, 0x2_0000_0207)), Some(0x2_0000_0207));
        assert_eq!(supported_xcr0(&cpuid(0, 0x207)), None);
    }

    #[test]
    fn probe_encodes_xsetbv() {
        let code = probe_code(0x2_0000_0207);
        assert_eq!(&code[..10], &[0xb8, 0x07, 0x02, 0, 0, 0xba, 0x02, 0, 0, 0]);
        assert_eq!(&code[10..], &[0x31, 0xc9, 0x0f, 0x01, 0xd1, 0xe6, 0x80, 0xf4]);
    }

    #[test]
    fn hiding_clears_leaf1_bits_and_leaf_0xd() {
        let mut c = cpuid(ECX_XSAVE | ECX_OSXSAVE | ECX_AVX | 1, 0x207);
        hide_xsave(&mut c);
        assert_eq!(c.as_slice()[0].ecx, 1);
        assert_eq!((c.as_slice()[1].eax, c.as_slice()[1].ebx), (0, 0));
    }
}
