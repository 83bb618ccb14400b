//! The CPUID a vCPU sees: KVM's supported set, made consistent with this
//! VM's topology (N single-threaded cores in one package) and marked as a
//! KVM guest.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Leaf 1 ECX: TSC-deadline timer mode of the local APIC.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 ECX: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: more than one logical processor per package.
const EDX_HTT: u32 = 1 << 28;
/// KVM feature leaf EAX bit 15: MSI extended destination ID. The IOAPIC
/// model does not implement the extended ID bits, so it must stay clear.
const KVM_FEATURE_MSI_EXT_DEST_ID: u32 = 1 << 15;

/// Leaf 0xB/0x1F level types (SDM vol. 2A, CPUID leaf 0BH).
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// What the topology leaves need to know.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    /// This vCPU's APIC ID (= its index).
    pub apic_id: u32,
    /// vCPUs in the VM, all cores of one package, one thread each.
    pub cpus: u32,
    /// Whether KVM emulates the TSC-deadline timer (`KVM_CAP_TSC_DEADLINE_TIMER`).
    pub tsc_deadline: bool,
}

/// Bits needed to number `n` things (ceil(log2(n))).
fn id_bits(n: u32) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

/// The CPUID for one vCPU, from KVM's supported set.
pub fn for_vcpu(supported: &CpuId, topo: Topology) -> CpuId {
    let mut cpuid = supported.clone();
    let core_bits = id_bits(topo.cpus);
    for e in cpuid.as_mut_slice() {
        patch(e, topo, core_bits);
        if topo.apic_id == 0 && e.function == 0xd {
            log::debug!(
                "CPUID 0xd.{}: eax={:#x} ebx={:#x} ecx={:#x} edx={:#x}",
                e.index,
                e.eax,
                e.ebx,
                e.ecx,
                e.edx
            );
        }
    }
    cpuid
}

fn patch(e: &mut kvm_cpuid_entry2, topo: Topology, core_bits: u32) {
    let Topology { apic_id, cpus, tsc_deadline } = topo;
    match e.function {
        1 => {
            // EBX[31:24] initial APIC ID, [23:16] addressable logical
            // processor IDs in the package.
            let logical = (1u32 << core_bits).min(255);
            e.ebx = (e.ebx & 0x0000_ffff) | ((apic_id & 0xff) << 24) | (logical << 16);
            e.ecx |= ECX_HYPERVISOR;
            if tsc_deadline {
                e.ecx |= ECX_TSC_DEADLINE;
            }
            if cpus > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        // Deterministic cache parameters (Intel): EAX[31:26] = addressable
        // core IDs - 1; each cache is private to one thread.
        4 if e.eax & 0x1f != 0 => {
            e.eax = (e.eax & 0x0000_3fff) | (((1 << core_bits) - 1) << 26);
        }
        0xb | 0x1f => {
            // Two levels: SMT (1 thread, shift 0) then core (shift enough for
            // all cores, N logical processors); higher sub-leaves invalid.
            let (eax, ebx, level_type) = match e.index {
                0 => (0, 1, LEVEL_SMT),
                1 => (core_bits, cpus, LEVEL_CORE),
                _ => (0, 0, 0),
            };
            e.eax = eax;
            e.ebx = ebx;
            e.ecx = (level_type << 8) | (e.index & 0xff);
            e.edx = apic_id;
        }
        // AMD: ECX[15:12] APIC ID size, [7:0] cores in the package - 1.
        0x8000_0008 => {
            e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | (cpus.saturating_sub(1) & 0xff);
        }
        // AMD extended APIC ID, one thread per core, one node.
        0x8000_001e => {
            e.eax = apic_id;
            e.ebx = apic_id & 0xff;
            e.ecx = 0;
        }
        0x4000_0001 => e.eax &= !KVM_FEATURE_MSI_EXT_DEST_ID,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, index, ..Default::default() }
    }

    fn topo(apic_id: u32, cpus: u32) -> Topology {
        Topology { apic_id, cpus, tsc_deadline: true }
    }

    #[test]
    fn leaf1_carries_apic_id_and_flags() {
        let mut e = entry(1, 0);
        e.ebx = 0x0000_0800; // CLFLUSH line size 8 (x8 bytes)
        patch(&mut e, topo(3, 4), id_bits(4));
        assert_eq!(e.ebx, 0x0304_0800);
        assert_eq!(e.ecx & (1 << 31), 1 << 31);
        assert_eq!(e.ecx & (1 << 24), 1 << 24);
        assert_eq!(e.edx & (1 << 28), 1 << 28);
        let mut e = entry(1, 0);
        e.edx = 1 << 28;
        patch(&mut e, topo(0, 1), id_bits(1));
        assert_eq!(e.edx & (1 << 28), 0);
    }

    #[test]
    fn extended_topology_for_three_cpus() {
        let mut smt = entry(0xb, 0);
        let mut core = entry(0xb, 1);
        let mut end = entry(0xb, 2);
        for e in [&mut smt, &mut core, &mut end] {
            patch(e, topo(2, 3), id_bits(3));
        }
        // SMT: shift 0, 1 thread, type 1; core: shift 2 (3 cores need 2
        // bits), 3 processors, type 2; EDX = x2APIC ID everywhere.
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 2));
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 3, 0x201, 2));
        assert_eq!((end.eax, end.ebx, end.ecx & 0xff00), (0, 0, 0));
    }

    #[test]
    fn amd_core_count_and_kvm_leaf() {
        let mut e = entry(0x8000_0008, 0);
        e.ecx = 0xffff_ffff;
        patch(&mut e, topo(0, 2), id_bits(2));
        assert_eq!(e.ecx & 0xf0ff, 0x1001);
        let mut k = entry(0x4000_0001, 0);
        k.eax = 0xffff_ffff;
        patch(&mut k, topo(0, 2), 1);
        assert_eq!(k.eax & (1 << 15), 0);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!([1, 2, 3, 4, 5, 254].map(id_bits), [0, 1, 2, 2, 3, 8]);
    }
}
