//! Choosing where scenarios run: directly on hardware KVM, or in the nested
//! QEMU sandbox.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::command::status_text;
use crate::error::{Error, Result};
use crate::paths::Paths;

/// The environment variable naming a `qemu-system-x86_64` to boot L1 with
/// instead of the test bed's own ([`Paths::l1_qemu`]). Debian 12's QEMU 7.2
/// loses wakeups of L1's vCPUs under load (see
/// `resources/testbed/fetch-qemu.sh`); whichever QEMU runs, the sandbox
/// stops an L1 stuck that way and re-runs what it left unfinished.
pub const L1_QEMU_VAR: &str = "DMAVM_L1_QEMU";

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

/// The environment variable that forces a test bed for the test bed's own
/// users (tests, the `testbed` binary): `direct` or `sandbox`.
pub const TESTBED_VAR: &str = "DMAVM_TESTBED";

/// Which test bed a caller wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestbedChoice {
    /// [`Testbed::Direct`] where this machine has usable hardware KVM,
    /// else [`Testbed::Sandbox`].
    Detect,
    /// Hardware KVM, or an error saying why there is none.
    Direct {
        /// What asked for it, for messages (`--direct`, `DMAVM_TESTBED=direct`).
        asked_by: String,
    },
    /// The sandbox, even where hardware KVM is usable.
    Sandbox {
        /// What asked for it, for messages and as the sandbox's reason.
        asked_by: String,
    },
}

impl TestbedChoice {
    /// The choice [`TESTBED_VAR`] makes: unset or empty detects.
    pub fn from_env() -> Result<Self> {
        match std::env::var(TESTBED_VAR).ok().as_deref() {
            None | Some("") => Ok(TestbedChoice::Detect),
            Some("direct") => Ok(TestbedChoice::Direct { asked_by: format!("{TESTBED_VAR}=direct") }),
            Some("sandbox") => Ok(TestbedChoice::Sandbox { asked_by: format!("{TESTBED_VAR}=sandbox") }),
            Some(other) => {
                Err(Error::NoTestbed(format!("{TESTBED_VAR}={other:?}: expected \"direct\" or \"sandbox\"")))
            }
        }
    }
}

impl Testbed {
    /// The test bed [`TESTBED_VAR`] asks for, else the one this machine
    /// has: [`Testbed::choose`] with [`TestbedChoice::from_env`].
    pub fn detect() -> Result<Self> {
        Self::choose(TestbedChoice::from_env()?)
    }

    /// The test bed `choice` asks for. Detecting picks [`Testbed::Direct`]
    /// when `/sys/module/kvm_intel` or `/sys/module/kvm_amd` exists and
    /// `/dev/kvm` opens read-write, else [`Testbed::Sandbox`]. The sandbox
    /// needs a working `qemu-system-x86_64` ([`L1_QEMU_VAR`], else
    /// [`Paths::l1_qemu`]): without one this is an error, never a silent
    /// skip.
    pub fn choose(choice: TestbedChoice) -> Result<Self> {
        match choice {
            TestbedChoice::Detect => match hardware_kvm() {
                Ok(()) => Ok(Testbed::Direct),
                Err(why) => sandbox(why),
            },
            TestbedChoice::Direct { asked_by } => hardware_kvm()
                .map(|()| Testbed::Direct)
                .map_err(|why| Error::NoTestbed(format!("{asked_by}, but {why}"))),
            TestbedChoice::Sandbox { asked_by } => sandbox(asked_by),
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

/// The sandbox test bed, if its QEMU is there and runs.
fn sandbox(reason: String) -> Result<Testbed> {
    let (qemu, from) = match std::env::var_os(L1_QEMU_VAR).filter(|v| !v.is_empty()) {
        Some(path) => (PathBuf::from(path), format!("named by {L1_QEMU_VAR}")),
        None => (Paths::new().l1_qemu(), "run resources/setup.sh, which fetches it".to_string()),
    };
    let unusable = |what: String| {
        Error::NoTestbed(format!("{reason}, so guests must run in the QEMU sandbox, but {what}"))
    };
    if !is_executable(&qemu) {
        return Err(unusable(format!("{} is not an executable file ({from})", qemu.display())));
    }
    let out = Command::new(&qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unusable(format!("{} cannot run: {e}", qemu.display())))?;
    if !out.status.success() {
        return Err(unusable(format!(
            "`{} --version` failed ({}): {}",
            qemu.display(),
            status_text(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Testbed::Sandbox { qemu, reason })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
