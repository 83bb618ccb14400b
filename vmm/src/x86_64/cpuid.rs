//! The CPUID a vCPU sees: KVM's supported set with this vCPU's APIC ID.

use kvm_bindings::CpuId;

/// Patches the per-vCPU fields of `cpuid` for vCPU `apic_id` (the initial
/// APIC ID in leaf 1 EBX[31:24] and the x2APIC ID in leaves 0xB/0x1F EDX).
pub fn set_apic_id(cpuid: &mut CpuId, apic_id: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((apic_id & 0xff) << 24),
            0xb | 0x1f => e.edx = apic_id,
            _ => {}
        }
    }
}
