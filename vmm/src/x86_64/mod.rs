//! x86_64 vCPU state set-up.

pub mod cpuid;
pub mod long_mode;
