//! One preparer of `build/` at a time across processes.
//!
//! Test binaries run side by side (`resources/test.sh`), and each prepares
//! the test bed when it starts: package checks, the guest kernel download,
//! the static dmavm, the emulated hosts' images. Those steps are idempotent
//! but not safe against a second copy of themselves writing the same files
//! at the same moment, so they run under an exclusive `flock(2)` on
//! `build/.prepare.lock`; a later process then finds everything done.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};
use crate::paths::Paths;

/// Held while preparing; the lock goes with the file when this is dropped
/// (or the process dies).
pub(crate) struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Waits until no other process holds the lock, then holds it.
    pub(crate) fn acquire(paths: &Paths) -> Result<Self> {
        let dir = paths.build();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(".prepare.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        loop {
            // SAFETY: flock on a descriptor this function owns (`file` stays
            // open for the call); it touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(BuildLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let paths = Paths::new();
        let first = BuildLock::acquire(&paths).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // flock locks belong to the open file description: a second
            // open in this process contends like another process would.
            let second = BuildLock::acquire(&Paths::new());
            tx.send(second.is_ok()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "taken while held");
        drop(first);
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
    }
}
