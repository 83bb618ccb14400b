//! Everything the harness takes from the rest of dmavm, named once: the
//! machine model it derives each run's expectations and `dmavm run`
//! options from, the config-file parser the matrix hands each machine to,
//! the checks `run` refuses a machine with, and the smallest guest memory
//! `run` accepts. The rest of boot_test imports these from here, so that
//! where they come from is this file's business alone.

pub use dmavm_machine::checks::{check, refusal};
pub use dmavm_machine::config_file::{parse as parse_config_file, ConfigError, FileConfig};
pub use dmavm_machine::layout::MIN_MEMORY;
pub use dmavm_machine::options::{MachineOptions, MixedCoherency};
pub use dmavm_machine::{Arch, Device, DeviceKind, Machine, Placement};

/// The option parsers of `dmavm run`, and its command line, for tests that
/// build machines as a user would and check that the options the harness
/// writes rebuild them.
#[cfg(test)]
pub mod options {
    pub use crate::cli::{Cli, Command};
    pub use dmavm_machine::options::{parse_bridge, parse_disk, parse_iommu, parse_simple};
}
