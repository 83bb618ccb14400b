//! Preparing what scenarios need: Debian packages, the guest kernel and
//! initramfs, the payloads and the static dmavm binary. Every step is a
//! cached, idempotent script or build, so repeating it is cheap.

use std::path::PathBuf;
use std::process::Command;

use crate::build_lock::BuildLock;
use crate::command::run_checked;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::static_build::build_static_dmavm;

/// What a prepared test bed hands to scenarios.
#[derive(Debug, Clone)]
pub struct Artefacts {
    /// The static dmavm binary (`DMAVM`).
    pub dmavm: PathBuf,
    /// The payload directory (`PAYLOADS`).
    pub payloads: PathBuf,
    /// The guest directory: vmlinuz, vmlinux, initramfs.cpio.gz (`GUEST`).
    pub guest: PathBuf,
}

/// Installs the Debian packages the test bed needs (`resources/setup.sh`,
/// a no-op when they are all there).
pub fn install_packages(paths: &Paths) -> Result<()> {
    let _lock = BuildLock::acquire(paths)?;
    script(paths, paths.resources().join("setup.sh"), &[])
}

/// Runs `resources/guest/fetch-kernel.sh`,
/// `resources/guest/build-initramfs.sh`, `resources/payloads/build.sh
/// build/payloads` (when that script exists; otherwise the payload directory
/// is left empty and payload scenarios fail for lack of their binary) and
/// builds the static dmavm. Expects the packages of [`install_packages`].
pub fn prepare(paths: &Paths) -> Result<Artefacts> {
    let _lock = BuildLock::acquire(paths)?;
    let res = paths.resources();
    script(paths, res.join("guest").join("fetch-kernel.sh"), &[])?;
    script(paths, res.join("guest").join("build-initramfs.sh"), &[])?;

    let payloads = paths.payloads();
    std::fs::create_dir_all(&payloads)
        .map_err(|e| Error::io(format!("creating {}", payloads.display()), e))?;
    let payload_build = res.join("payloads").join("build.sh");
    if payload_build.exists() {
        script(paths, payload_build, &[payloads.as_os_str()])?;
    } else {
        eprintln!("dmavm-tests: {} does not exist; no payloads built", payload_build.display());
    }

    let dmavm = build_static_dmavm(paths)?;
    Ok(Artefacts { dmavm, payloads, guest: paths.guest() })
}

/// Runs a bash script of the repository from the repository root.
pub(crate) fn script(paths: &Paths, path: PathBuf, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut cmd = Command::new("bash");
    cmd.current_dir(&paths.root).arg(path).args(args);
    run_checked(&mut cmd).map(drop)
}
