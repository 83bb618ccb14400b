//! The x86_64 back end: a PC-like machine without legacy chipset (split
//! irqchip: LAPICs in KVM, the IOAPIC in user space; no PIT, no PIC),
//! booted through the Linux 64-bit boot protocol or PVH, described by ACPI.

pub mod boot;
pub mod cpuid;
pub mod entry;
pub mod firmware;
pub mod interrupts;
pub mod lapic;
pub mod layout;
pub mod msrs;
pub mod payload;
pub mod uart;
pub mod vcpu_exits;
pub mod vm;
pub mod xsave_probe;
