//! The arm64 vCPU exits the shared vCPU loop does not handle itself: none
//! (power-off and reset arrive as the system events the loop handles), and
//! the register dump of a vCPU that failed.

use kvm_ioctls::VcpuExit;

pub use super::regs::dump_registers;

/// What these exits need: nothing on arm64.
#[derive(Debug)]
pub struct ArchExitState;

/// Handles `exit` of vCPU `id`: every exit that reaches here is one dmavm
/// does not expect, an error that ends the VM.
pub fn handle(id: u32, exit: VcpuExit<'_>, _state: &ArchExitState) -> Result<(), String> {
    Err(format!("vCPU {id}: unexpected KVM exit {exit:?}"))
}
