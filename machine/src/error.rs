//! Why a machine cannot be built or described.

/// A machine that cannot be built, described or checked, as one line
/// naming the device or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The options ask for what cannot be built at all: a device name given
    /// twice, an unknown bridge, a slot or window that does not exist, too
    /// many devices.
    #[error("{0}")]
    Placement(String),
    /// The architecture's address map has no room for what was asked
    /// (memory, vCPUs, an initrd, a PCI segment).
    #[error("{0}")]
    Layout(String),
    /// The ACPI encoder refused the description.
    #[error("building the ACPI tables: {0}")]
    Acpi(#[from] dmavm_acpi::Error),
    /// The device-tree encoder refused the description.
    #[error("building the device tree: {0}")]
    DeviceTree(#[from] dmavm_fdt::Error),
    /// A file `describe` reads (the initrd, for its size).
    #[error("cannot read the initrd {path}: {source}")]
    Initrd {
        /// The file as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON rendering of a description.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Returns early with a [`MachineError`] of the given variant, formatted
/// like `format!`.
macro_rules! fail {
    ($variant:ident, $($arg:tt)+) => {
        return Err($crate::error::MachineError::$variant(format!($($arg)+)))
    };
}
pub(crate) use fail;

/// The crate's result.
pub type Result<T, E = MachineError> = std::result::Result<T, E>;
