//! Building the static dmavm binary that scenarios run (in the sandbox it
//! must not depend on the host's shared libraries).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::command::run_checked;
use crate::error::Result;
use crate::paths::Paths;

/// The Rust target the static binary is built for.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds `dmavm` statically linked (`-C target-feature=+crt-static`, release
/// profile) into `build/target-static` and returns the binary's path. Cargo
/// makes this a no-op when nothing changed.
pub fn build_static_dmavm(paths: &Paths) -> Result<PathBuf> {
    let target_dir = paths.target_static();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.root)
        .args(["build", "--release", "-p", "dmavm", "--target", STATIC_TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // would override RUSTFLAGS if inherited from an outer cargo
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run_checked(&mut cmd)?;
    Ok(target_dir.join(STATIC_TARGET).join("release").join("dmavm"))
}
