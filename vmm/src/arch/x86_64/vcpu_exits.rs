//! The x86_64 vCPU exits the shared vCPU loop does not handle itself:
//! IOAPIC end-of-interrupt (the split irqchip's LAPICs report EOIs of
//! level-triggered vectors to user space), and the register dump of a
//! vCPU that failed.

use std::sync::{Arc, Mutex};

use dmavm_devices::ioapic::Ioapic;
use kvm_ioctls::{VcpuExit, VcpuFd};

/// What these exits need: the user-space IOAPIC.
#[derive(Debug)]
pub struct ArchExitState {
    /// Receives EOIs for level-triggered vectors.
    pub ioapic: Arc<Mutex<Ioapic>>,
}

/// Handles `exit` of vCPU `id`; an exit no device handles is an error
/// that ends the VM.
pub fn handle(id: u32, exit: VcpuExit<'_>, state: &ArchExitState) -> Result<(), String> {
    match exit {
        VcpuExit::IoapicEoi(vector) => match state.ioapic.lock() {
            Ok(mut ioapic) => {
                if let Err(e) = ioapic.end_of_interrupt(vector) {
                    log::warn!("vCPU {id}: IOAPIC EOI for vector {vector}: {e}");
                }
                Ok(())
            }
            Err(_) => Err("the IOAPIC is unusable after a panic".into()),
        },
        other => Err(format!("vCPU {id}: unexpected KVM exit {other:?}")),
    }
}

/// Logs the registers of a vCPU that failed, at debug level.
pub fn dump_registers(id: u32, vcpu: &VcpuFd) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => {
            log::debug!(
                "vCPU {id}: rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} \
                 rsi={:#x} rdi={:#x} rbp={:#x}",
                r.rip,
                r.rsp,
                r.rflags,
                r.rax,
                r.rbx,
                r.rcx,
                r.rdx,
                r.rsi,
                r.rdi,
                r.rbp
            );
            log::debug!(
                "vCPU {id}: cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x} idt={:#x}+{:#x}",
                s.cr0,
                s.cr2,
                s.cr3,
                s.cr4,
                s.efer,
                s.cs.selector,
                s.idt.base,
                s.idt.limit
            );
        }
        (Err(e), _) | (_, Err(e)) => log::debug!("vCPU {id}: cannot read registers: {e}"),
    }
}
