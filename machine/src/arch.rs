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
