//! Why the harness gives no verdict, or a failing one it could not write
//! down, with the exit status each means ([`Error::exit_status`]).

use std::io;
use std::path::PathBuf;

use crate::exit_status::{after_signal, BAD_INPUT, FAILED, UNTESTED};
use crate::matrix::MatrixError;

/// Why `dmavm boot-test` stopped without a verdict, or could not write a
/// report of one. Each displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--kernel` is not a file.
    #[error("--kernel {}: no such file", .0.display())]
    NoKernel(PathBuf),
    /// `--kernel` cannot be read.
    #[error("--kernel {}: {source}", path.display())]
    Kernel {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// `dmavm boot-test merge` refuses its reports.
    #[error("merge: {0}")]
    Merge(String),
    /// `--arch aarch64` without `--initrd`.
    #[error("--arch aarch64 needs --initrd: the harness builds x86_64 initramfs images only (resources/guest/arm64/build-initramfs.sh builds an arm64 one)")]
    NeedInitrd,
    /// `--initrd` is not a file.
    #[error("--initrd {}: no such file", .0.display())]
    NoInitrd(PathBuf),
    /// `--modules` is not a folder.
    #[error("--modules {}: no such folder", .0.display())]
    NoModules(PathBuf),
    /// A matrix cannot be read or used (`file:line: what`).
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    /// `--only` names no run of the matrix.
    #[error("--only {}: no run of the matrix has that name", .0.join(", "))]
    NoSuchRun(Vec<String>),
    /// The `--logs` folder cannot be made.
    #[error("--logs {}: {source}", path.display())]
    Logs {
        /// The folder.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// A termination signal cannot be caught, so the harness could not
    /// stop its VMs on it.
    #[error("cannot catch signal {signal}: {source}")]
    CatchSignal {
        /// The signal.
        signal: i32,
        /// Why not.
        source: vmm_sys_util::errno::Error,
    },
    /// Neither this machine's KVM nor the test bed can run the matrix.
    #[error("cannot run the matrix: {0}")]
    Testbed(#[source] dmavm_tests::Error),
    /// A file or process the harness needs failed it.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing (`writing PATH`, ...).
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// A script or program the harness runs (the initramfs recipe, the
    /// test bed's image builder) failed.
    #[error("{what} failed: {last}")]
    Step {
        /// What it was for.
        what: String,
        /// The last line it wrote on stderr.
        last: String,
    },
    /// A run's network for the `net` check cannot be made (no root, no
    /// TAP support, ...).
    #[error("{0}")]
    Net(String),
    /// Reports of the verdict (`--json`, `--junit`) cannot be written,
    /// each with why. The table was printed, but it is a failure: whoever
    /// asked for a file will not find it.
    #[error("{}", unwritten(.0))]
    Reports(Vec<(PathBuf, io::Error)>),
    /// A termination signal stopped the harness; every VM was stopped and
    /// the temporary files removed.
    #[error("interrupted by signal {0}: every VM stopped, temporary files removed")]
    Interrupted(i32),
}

impl Error {
    /// The exit status of `dmavm boot-test` that stopped with this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::NoInitrd(_)
            | Self::NeedInitrd
            | Self::Matrix(_)
            | Self::NoSuchRun(_)
            | Self::Logs { .. }
            | Self::Merge(_) => BAD_INPUT,
            Self::Interrupted(signal) => after_signal(*signal),
            // The kernel and its modules are what a bisection builds: when
            // they are not there, that commit cannot be tested.
            Self::NoKernel(_)
            | Self::Kernel { .. }
            | Self::NoModules(_)
            | Self::CatchSignal { .. }
            | Self::Testbed(_)
            | Self::Io { .. }
            | Self::Net(_)
            | Self::Step { .. } => UNTESTED,
            Self::Reports(_) => FAILED,
        }
    }
}

fn unwritten(reports: &[(PathBuf, io::Error)]) -> String {
    let each: Vec<String> = reports.iter().map(|(p, e)| format!("writing {}: {e}", p.display())).collect();
    each.join("; ")
}

/// For `map_err`: an I/O error while doing `what`.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The last line a failed process wrote on stderr, to say why in one
/// line.
pub(crate) fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_2_untested_125_interruption_128_plus_the_signal() {
        assert_eq!(Error::NoKernel("/k".into()).exit_status(), UNTESTED);
        assert_eq!(Error::NoSuchRun(vec![]).exit_status(), BAD_INPUT);
        assert_eq!(Error::Merge("x".into()).exit_status(), BAD_INPUT);
        assert_eq!(
            Error::NoSuchRun(vec!["a".into(), "b".into()]).to_string(),
            "--only a, b: no run of the matrix has that name"
        );
        assert_eq!(Error::Interrupted(libc::SIGINT).exit_status(), 130);
        let e = io("writing /x")(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.exit_status(), UNTESTED);
        assert!(e.to_string().starts_with("writing /x: "), "{e}");
        assert_eq!(last_line(b"first\nlast\n\n"), "last");
        assert_eq!(last_line(b""), "no output");
        assert_eq!(Error::Reports(vec![]).exit_status(), FAILED);
        let e = Error::Reports(vec![
            ("/a.json".into(), io::Error::from(io::ErrorKind::NotFound)),
            ("/b.xml".into(), io::Error::from(io::ErrorKind::PermissionDenied)),
        ]);
        assert!(
            e.to_string().starts_with("writing /a.json: ") && e.to_string().contains("; writing /b.xml: "),
            "{e}"
        );
    }
}
