//! The error type of the test bed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can keep the test bed from producing scenario results.
///
/// A scenario that runs and fails is not an error: it is a
/// [`ScenarioResult`](crate::ScenarioResult) with a non-zero status.
#[derive(thiserror::Error)]
pub enum Error {
    /// Neither hardware KVM nor a working QEMU for the sandbox.
    #[error("no usable test bed: {0}")]
    NoTestbed(String),
    /// An I/O operation on a file or process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path involved.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A preparation command (script, cargo build) exited unsuccessfully.
    #[error("`{command}` failed ({status}); last output:\n{output_tail}")]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// How it ended (exit status or signal).
        status: String,
        /// The last lines of its stdout and stderr.
        output_tail: String,
    },
    /// A scenario name that is not a plain file stem.
    #[error("invalid scenario name {0:?}: use letters, digits, '-' and '_'")]
    BadScenarioName(String),
    /// A scenario variable whose name or value could not be passed on (see
    /// [`Testbed::run_with_env`](crate::Testbed::run_with_env)).
    #[error("invalid scenario variable {0:?}: {1}")]
    BadScenarioVar(String, &'static str),
    /// No script for a scenario.
    #[error("scenario {name:?} has no script at {}", path.display())]
    NoSuchScenario {
        /// The scenario asked for.
        name: String,
        /// Where its script was looked for.
        path: PathBuf,
    },
    /// [`run_scenario`](crate::run_scenario) was asked for a scenario that
    /// is not in the list it runs.
    #[error("scenario {name:?} is not in the list {list:?}")]
    NotInList {
        /// The scenario asked for.
        name: String,
        /// The list that was run.
        list: Vec<String>,
    },
    /// An error met by an earlier, cached run that this call shares.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// An [`Error::Io`] with a description of what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}

/// Debug prints the message (and its causes) rather than the structure, so a
/// test returning `Result<(), Error>` fails with a readable explanation.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, "\n  caused by: {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
