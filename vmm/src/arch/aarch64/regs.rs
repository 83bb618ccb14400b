//! vCPU set-up: `KVM_ARM_VCPU_INIT` and the registers Linux's boot protocol
//! needs (Documentation/arch/arm64/booting.rst: x0 = the device tree's
//! physical address, x1-x3 = 0, PC = the kernel's first instruction, MMU
//! and D-cache off, interrupts masked, EL1 or EL2).

use std::mem::offset_of;

use anyhow::{Context, Result};
use kvm_bindings::{
    kvm_regs, kvm_vcpu_init, user_pt_regs, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_REG_ARM64,
    KVM_REG_ARM64_SYSREG, KVM_REG_ARM64_SYSREG_CRM_SHIFT, KVM_REG_ARM64_SYSREG_CRN_SHIFT,
    KVM_REG_ARM64_SYSREG_OP0_SHIFT, KVM_REG_ARM64_SYSREG_OP1_SHIFT, KVM_REG_ARM64_SYSREG_OP2_SHIFT,
    KVM_REG_ARM_CORE, KVM_REG_SIZE_U64,
};
use kvm_ioctls::{VcpuFd, VmFd};

/// The `KVM_REG_ARM_CORE` id of the 64-bit field at byte `offset` of
/// `struct kvm_regs` (api.rst, KVM_SET_ONE_REG: the index is the offset in
/// 32-bit words).
fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (offset / 4) as u64
}

/// `x<n>`.
fn x(n: usize) -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, regs) + n * 8)
}

fn pc() -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pc))
}

/// The id of system register `op0, op1, CRn, CRm, op2` (api.rst,
/// "ARM64 system registers").
const fn sys_reg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64
        | KVM_REG_SIZE_U64
        | KVM_REG_ARM64_SYSREG as u64
        | op0 << KVM_REG_ARM64_SYSREG_OP0_SHIFT
        | op1 << KVM_REG_ARM64_SYSREG_OP1_SHIFT
        | crn << KVM_REG_ARM64_SYSREG_CRN_SHIFT
        | crm << KVM_REG_ARM64_SYSREG_CRM_SHIFT
        | op2 << KVM_REG_ARM64_SYSREG_OP2_SHIFT
}

/// MPIDR_EL1 (Arm ARM D23.2: op0 3, op1 0, CRn 0, CRm 0, op2 5).
const MPIDR_EL1: u64 = sys_reg(3, 0, 0, 0, 5);

/// KVM's preferred vCPU target for this host, with PSCI 0.2 (KVM then
/// implements PSCI 0.2 and later: CPU_ON, SYSTEM_OFF, SYSTEM_RESET, ...).
pub fn preferred_init(vm: &VmFd) -> Result<kvm_vcpu_init> {
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init).context("KVM_ARM_PREFERRED_TARGET failed")?;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    Ok(init)
}

/// Initialises vCPU `id`: the boot vCPU runnable, the others powered off
/// until the guest starts them with PSCI CPU_ON (KVM_ARM_VCPU_POWER_OFF).
pub fn init(vcpu: &VcpuFd, id: u32, base: &kvm_vcpu_init) -> Result<()> {
    let mut init = *base;
    if id > 0 {
        init.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    vcpu.vcpu_init(&init).with_context(|| format!("KVM_ARM_VCPU_INIT of vCPU {id} failed"))
}

fn set(vcpu: &VcpuFd, id: u64, value: u64) -> Result<()> {
    vcpu.set_one_reg(id, &value.to_le_bytes()).map(|_| ()).with_context(|| format!("KVM_SET_ONE_REG {id:#x}"))
}

fn get(vcpu: &VcpuFd, id: u64) -> Result<u64> {
    let mut bytes = [0u8; 8];
    vcpu.get_one_reg(id, &mut bytes).with_context(|| format!("KVM_GET_ONE_REG {id:#x}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Points the boot vCPU at the kernel: PC = `entry`, x0 = `fdt`, x1-x3 = 0.
/// KVM_ARM_VCPU_INIT left PSTATE at EL1h with D, A, I and F masked and the
/// MMU and caches off (SCTLR_EL1 reset value), as booting.rst asks.
pub fn set_boot_registers(vcpu: &VcpuFd, entry: u64, fdt: u64) -> Result<()> {
    set(vcpu, pc(), entry)?;
    set(vcpu, x(0), fdt)?;
    for n in 1..=3 {
        set(vcpu, x(n), 0)?;
    }
    Ok(())
}

/// The vCPU's MPIDR_EL1 as KVM set it (its affinity is the `reg` of the
/// vCPU's node in the device tree).
pub fn mpidr(vcpu: &VcpuFd) -> Result<u64> {
    get(vcpu, MPIDR_EL1)
}

/// Logs PC and the first argument registers of a vCPU that failed.
pub fn dump_registers(id: u32, vcpu: &VcpuFd) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    match (get(vcpu, pc()), get(vcpu, x(0)), get(vcpu, x(1))) {
        (Ok(pc), Ok(x0), Ok(x1)) => log::debug!("vCPU {id}: pc={pc:#x} x0={x0:#x} x1={x1:#x}"),
        _ => log::debug!("vCPU {id}: cannot read registers"),
    }
}
