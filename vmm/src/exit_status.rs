//! The exit statuses of the `dmavm` command (documented in `--help`).

/// A command-line error, as clap reports it.
pub const USAGE_STATUS: u8 = 2;
/// Every other failure of dmavm or the guest.
pub const ERROR_STATUS: u8 = 1;
