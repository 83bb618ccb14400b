//! The guest architectures a machine can be built for.

use serde::{Deserialize, Serialize};

/// A guest architecture: which address map places the devices and which
/// firmware describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// ACPI tables (DSDT `_CCA`, VIOT) over the x86_64 map.
    #[serde(rename = "x86_64")]
    X86_64,
    /// A device tree (`dma-coherent`, `iommus`, `iommu-map`) over the arm64
    /// `virt`-style map.
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The most vCPUs its machine has room for, and why: what `run` and
    /// `describe` refuse above (`run` also refuses above KVM's own limit).
    pub fn max_vcpus(self) -> (u32, &'static str) {
        match self {
            Arch::X86_64 => (
                crate::layout::x86_64::MAX_VCPUS,
                "the MADT and IOAPIC use 8-bit xAPIC IDs, and 255 is the broadcast ID",
            ),
            Arch::Aarch64 => (
                crate::layout::aarch64::MAX_VCPUS as u32,
                "the GIC's redistributor region has room for that many",
            ),
        }
    }

    /// The name Linux and Rust give it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
