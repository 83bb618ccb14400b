//! The arm64 back end: what a KVM VM on an arm64 host needs beyond the
//! shared machine model, devices and vCPU loop.
//!
//! - [`layout`]: the guest address map (the fdt crate's), under the x86_64
//!   map's names, so the machine model places devices at arm64 addresses;
//! - [`interrupts`]: SPI and ITS (MSI) routes, irqfds;
//! - [`gic`]: the in-kernel GICv3 and ITS;
//! - [`regs`]: vCPU init (PSCI 0.2, secondaries powered off), boot registers;
//! - [`uart`]: the 16550A console on MMIO;
//! - [`boot`]: the `Image` and initrd;
//! - [`vm`]: building and running the VM.

pub mod boot;
pub mod gic;
pub mod interrupts;
pub mod layout;
pub mod regs;
pub mod uart;
pub mod vcpu_exits;
pub mod vm;
