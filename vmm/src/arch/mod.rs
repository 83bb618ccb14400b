//! What differs between the architectures dmavm runs on. Each back end has
//! the same modules with the same roles, and the shared code reaches the
//! build's back end through them:
//!
//! - `layout`: the guest address map (the machine model's, plus where
//!   booting puts its own structures);
//! - `interrupts`: interrupt routing to KVM (GSI routes, irqfds) for the
//!   machine's interrupt controller;
//! - `boot`: loading the kernel and initrd;
//! - `vcpu_exits`: the vCPU exits only that architecture has, and the
//!   register dump of a failed vCPU;
//! - `vm`: building the VM from its config and running it until it stops.
//!
//! x86_64 adds its vCPU state (`cpuid`, `entry`, `lapic`, `msrs`,
//! `xsave_probe`), the ACPI `firmware` and test `payload`s; aarch64 its
//! `gic`, vCPU `regs` and console `uart`.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::*;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
