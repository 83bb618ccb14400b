//! Run logs under `build/testbed/logs/`, one per scenario run, each line
//! stamped with the host seconds since the run started and written out
//! as it comes, so that a run that hangs can be read while it hangs.

use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// An open run log.
#[derive(Debug)]
pub(crate) struct RunLog {
    path: PathBuf,
    out: LineWriter<File>,
    start: Instant,
}

impl RunLog {
    /// Creates `DIR/KIND-<unix seconds>-<pid>.log`.
    pub(crate) fn create(dir: &Path, kind: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let path = dir.join(format!("{kind}-{secs}-{}.log", std::process::id()));
        let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(RunLog { path, out: LineWriter::new(file), start: Instant::now() })
    }

    /// The log file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds since the log was created.
    pub(crate) fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Appends one line, stamped with [`RunLog::elapsed`].
    pub(crate) fn line(&mut self, line: &str) -> Result<()> {
        let t = self.elapsed();
        writeln!(self.out, "[{t:8.3}] {line}")
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Flushes what was written.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }
}
