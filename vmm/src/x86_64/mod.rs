//! x86_64 vCPU state set-up.

pub mod cpuid;
pub mod entry;
pub mod lapic;
pub mod msrs;
pub mod xsave_probe;
