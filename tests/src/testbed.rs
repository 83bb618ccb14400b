//! Choosing where scenarios run: directly on hardware KVM, or in the nested
//! QEMU sandbox.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::command::status_text;
use crate::error::{Error, Result};

/// The QEMU binary the sandbox needs.
pub const QEMU: &str = "qemu-system-x86_64";

/// Where scenarios run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Testbed {
    /// Hardware KVM (`kvm_intel` or `kvm_amd`) with a usable `/dev/kvm`:
    /// scenarios run on this machine.
    Direct,
    /// No hardware KVM: scenarios run inside an L1 Linux booted by QEMU TCG
    /// with an emulated SVM CPU, under that kernel's KVM.
    Sandbox {
        /// The `qemu-system-x86_64` that boots L1.
        qemu: PathBuf,
        /// Why the direct path was not taken.
        reason: String,
    },
}

impl Testbed {
    /// Picks [`Testbed::Direct`] when `/sys/module/kvm_intel` or
    /// `/sys/module/kvm_amd` exists and `/dev/kvm` opens read-write, else
    /// [`Testbed::Sandbox`], which needs a working `qemu-system-x86_64`
    /// (without one this is an error, never a silent skip).
    /// `DMAVM_TESTBED=direct|sandbox` forces a path.
    pub fn detect() -> Result<Self> {
        match std::env::var("DMAVM_TESTBED").ok().as_deref() {
            None | Some("") => {}
            Some("direct") => {
                return hardware_kvm()
                    .map(|()| Testbed::Direct)
                    .map_err(|why| Error::NoTestbed(format!("DMAVM_TESTBED=direct, but {why}")))
            }
            Some("sandbox") => return sandbox("DMAVM_TESTBED=sandbox".to_string()),
            Some(other) => {
                return Err(Error::NoTestbed(format!(
                    "DMAVM_TESTBED={other:?}: expected \"direct\" or \"sandbox\""
                )))
            }
        }
        match hardware_kvm() {
            Ok(()) => Ok(Testbed::Direct),
            Err(why) => sandbox(why),
        }
    }

    /// "direct" or "sandbox".
    pub fn name(&self) -> &'static str {
        match self {
            Testbed::Direct => "direct",
            Testbed::Sandbox { .. } => "sandbox",
        }
    }
}

impl fmt::Display for Testbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Testbed::Direct => write!(f, "direct (hardware KVM on this machine)"),
            Testbed::Sandbox { qemu, reason } => {
                write!(f, "sandbox (L1 Linux under {} TCG with nested SVM; {reason})", qemu.display())
            }
        }
    }
}

/// `Ok` when this machine has usable hardware KVM, else why not.
fn hardware_kvm() -> std::result::Result<(), String> {
    let module = |m: &str| Path::new("/sys/module").join(m).exists();
    if !module("kvm_intel") && !module("kvm_amd") {
        return Err(if module("kvm_pvm") {
            "/dev/kvm here is PVM (kvm_pvm), which cannot boot Linux guests".to_string()
        } else {
            "no hardware KVM (neither kvm_intel nor kvm_amd is loaded)".to_string()
        });
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("hardware KVM is loaded but /dev/kvm is not usable: {e}"))
}

/// The sandbox test bed, if QEMU is installed and runs.
fn sandbox(reason: String) -> Result<Testbed> {
    let Some(qemu) = find_in_path(QEMU) else {
        return Err(Error::NoTestbed(format!(
            "{reason}, so guests must run in the QEMU sandbox, but {QEMU} is not \
             installed (run resources/setup.sh)"
        )));
    };
    let out = Command::new(&qemu).arg("--version").stdin(Stdio::null()).output().map_err(|e| {
        Error::NoTestbed(format!(
            "{reason}, so guests must run in the QEMU sandbox, but {} cannot run: {e}",
            qemu.display()
        ))
    })?;
    if !out.status.success() {
        return Err(Error::NoTestbed(format!(
            "{reason}, so guests must run in the QEMU sandbox, but `{} --version` \
             failed ({}): {}",
            qemu.display(),
            status_text(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Testbed::Sandbox { qemu, reason })
}

/// The first executable file called `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
