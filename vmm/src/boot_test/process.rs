//! What the harness must clean up: its temporary folder, and on Ctrl-C
//! (or SIGTERM, SIGHUP) its VMs. Termination signals only set a flag; the
//! run loops poll it, kill their children and return, and the folder's
//! drop removes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use vmm_sys_util::signal::register_signal_handler;

/// The termination signal that arrived, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // An atomic store is async-signal-safe.
    INTERRUPTED.store(signal, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the flag instead of killing the
/// harness.
pub fn catch_termination() -> Result<()> {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        register_signal_handler(s, on_signal).with_context(|| format!("cannot catch signal {s}"))?;
    }
    Ok(())
}

/// The termination signal that arrived, if any.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A private temporary folder, removed with everything in it when
/// dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new folder under `$TMPDIR` (or /tmp).
    pub fn new(prefix: &str) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = base.join(format!("{prefix}.{}.{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating the temporary folder {}", path.display()))?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_goes_with_its_contents() {
        let t = TempDir::new("dmavm-test").unwrap();
        let p = t.path().to_path_buf();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/c"), "x").unwrap();
        drop(t);
        assert!(!p.exists());
    }
}
