//! Model-specific registers a vCPU starts with when there is no firmware to
//! set them.

use anyhow::{bail, Context, Result};
use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::VcpuFd;

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// IA32_MISC_ENABLE bit 0: fast string operations, as firmware leaves it.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled (bit 11) with write-back (6) as the default type: without
/// firmware the guest would otherwise see all memory as uncached.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

/// Sets the boot MSRs of `vcpu`.
pub fn setup(vcpu: &VcpuFd) -> Result<()> {
    let entries: Vec<kvm_msr_entry> = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() })
    .collect();
    let msrs = Msrs::from_entries(&entries).context("building the MSR list")?;
    let set = vcpu.set_msrs(&msrs).context("KVM_SET_MSRS")?;
    if set != entries.len() {
        bail!(
            "KVM accepted only {set} of {} boot MSRs (MSR {:#x} refused)",
            entries.len(),
            entries[set].index
        );
    }
    Ok(())
}
