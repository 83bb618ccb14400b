//! Opening a file the user named (a config file, a matrix, a payload, a
//! kernel, an initrd, a disk image) for what dmavm does with it, refusing
//! what would hang or exhaust the process, with one line that says why.
//!
//! A FIFO or a character device blocks on `open` or on `read` until
//! someone writes, or never ends (`/dev/zero`); a directory opens but every
//! read fails. So only regular files are taken (a disk image may also be
//! a host block device), a file read whole has a size cap, and the file
//! is opened with `O_NONBLOCK` so that a FIFO swapped in between the
//! check and the open cannot block either: the type is checked on the
//! opened file itself. Disk images are locked (`flock`) so that two VMs
//! cannot write one image at once.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::user_text::shown;

/// What a file is opened for: what it may be, how large, how it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `--config`: TOML, read whole.
    Config,
    /// `boot-test --matrix`: TOML, read whole.
    Matrix,
    /// `--payload`: a flat binary, read whole.
    Payload,
    /// `--kernel`: read by the kernel loader.
    Kernel,
    /// `--initrd`: read whole into guest memory, which bounds it.
    Initrd,
    /// `--disk path=`: a regular file or a block device, locked while open
    /// (exclusively when the guest may write it, shared when read-only).
    Disk {
        /// Opened for writing (`readonly=off`).
        writable: bool,
    },
}

impl Purpose {
    /// The most bytes a file read whole for this purpose may hold.
    pub fn size_limit(self) -> Option<u64> {
        match self {
            Purpose::Config | Purpose::Matrix => Some(1 << 20),
            Purpose::Payload => Some(64 << 20),
            Purpose::Kernel | Purpose::Initrd | Purpose::Disk { .. } => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Purpose::Config => "config file",
            Purpose::Matrix => "matrix",
            Purpose::Payload => "payload",
            Purpose::Kernel => "kernel",
            Purpose::Initrd => "initrd",
            Purpose::Disk { .. } => "disk image",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Purpose::Disk { .. } => "open",
            _ => "read",
        }
    }

    fn takes_block_devices(self) -> bool {
        matches!(self, Purpose::Disk { .. })
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a file the user named cannot be used, as one line naming it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// It cannot be opened (missing, no permission, ...).
    #[error("cannot {} the {purpose} {path}: {io}", purpose.verb())]
    Open {
        /// What it was for.
        purpose: Purpose,
        /// The path, shown.
        path: String,
        /// Why (not a `source`: the line says it already).
        io: std::io::Error,
    },
    /// It is not a kind of file dmavm can use for this.
    #[error("the {purpose} {path} is {kind}: {wanted}")]
    Kind {
        /// What it was for.
        purpose: Purpose,
        /// The path, shown.
        path: String,
        /// What it is ("a directory", "a FIFO", ...).
        kind: &'static str,
        /// What it must be.
        wanted: &'static str,
    },
    /// It is larger than a file read whole for this may be.
    #[error("the {purpose} {path} is {size} bytes, more than the {} MiB a {purpose} may have", limit >> 20)]
    TooLarge {
        /// What it was for.
        purpose: Purpose,
        /// The path, shown.
        path: String,
        /// Its size (at least), in bytes.
        size: u64,
        /// The cap, in bytes.
        limit: u64,
    },
    /// Reading it failed.
    #[error("cannot read the {purpose} {path}: {io}")]
    Read {
        /// What it was for.
        purpose: Purpose,
        /// The path, shown.
        path: String,
        /// Why (not a `source`: the line says it already).
        io: std::io::Error,
    },
    /// Another process holds a conflicting lock on the disk image.
    #[error(
        "the disk image {path} is in use: another process holds a lock on it (a disk image is written by one \
         VM at a time, and not read while written)"
    )]
    Locked {
        /// The path, shown.
        path: String,
        /// Whether this open wanted to write (an exclusive lock).
        writable: bool,
    },
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Whether a file of type `t` may be used for `purpose`; why not if not.
fn check_type(path: &Path, purpose: Purpose, t: std::fs::FileType) -> Result<(), InputError> {
    if t.is_file() || (t.is_block_device() && purpose.takes_block_devices()) {
        return Ok(());
    }
    Err(InputError::Kind {
        purpose,
        path: shown(&path.display().to_string()),
        kind: kind_of(t),
        wanted: if purpose.takes_block_devices() {
            "a disk image must be a regular file or a block device"
        } else {
            "dmavm reads only regular files"
        },
    })
}

fn check_size(path: &Path, purpose: Purpose, size: u64) -> Result<(), InputError> {
    match purpose.size_limit() {
        Some(limit) if size > limit => {
            Err(InputError::TooLarge { purpose, path: shown(&path.display().to_string()), size, limit })
        }
        _ => Ok(()),
    }
}

/// Checks what `path` is without opening it (so without blocking and
/// without taking a lock): for `describe`, which does not need the files,
/// and for `run`'s checks before KVM is touched.
pub fn check(path: &Path, purpose: Purpose) -> Result<(), InputError> {
    let meta = std::fs::metadata(path).map_err(|io| InputError::Open {
        purpose,
        path: shown(&path.display().to_string()),
        io,
    })?;
    check_type(path, purpose, meta.file_type())?;
    check_size(path, purpose, meta.len())
}

/// Opens `path` for `purpose`: read-only unless it is a writable disk,
/// close-on-exec, never blocking on a FIFO; refuses what is not a regular
/// file (or block device, for a disk) and a file read whole beyond its
/// cap; locks a disk image.
pub fn open(path: &Path, purpose: Purpose) -> Result<File, InputError> {
    let writable = matches!(purpose, Purpose::Disk { writable: true });
    let shown_path = || shown(&path.display().to_string());
    // Rust opens every file close-on-exec. O_NONBLOCK: opening a FIFO
    // returns at once; O_NOCTTY: a terminal never becomes dmavm's.
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EISDIR) => InputError::Kind {
                purpose,
                path: shown_path(),
                kind: "a directory",
                wanted: "a disk image must be a regular file or a block device",
            },
            _ => InputError::Open { purpose, path: shown_path(), io: source },
        })?;
    let meta = file.metadata().map_err(|io| InputError::Open { purpose, path: shown_path(), io })?;
    check_type(path, purpose, meta.file_type())?;
    check_size(path, purpose, meta.len())?;
    blocking(&file).map_err(|io| InputError::Open { purpose, path: shown_path(), io })?;
    if let Purpose::Disk { writable } = purpose {
        lock(&file, writable).map_err(|e| match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => InputError::Locked { path: shown_path(), writable },
            _ => InputError::Open { purpose, path: shown_path(), io: e },
        })?;
    }
    Ok(file)
}

/// Reads the whole file at `path` for `purpose`, never more than its cap
/// (a file growing while it is read included).
pub fn read(path: &Path, purpose: Purpose) -> Result<Vec<u8>, InputError> {
    let file = open(path, purpose)?;
    let limit = purpose.size_limit().unwrap_or(u64::MAX);
    let mut data = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut data).map_err(|io| InputError::Read {
        purpose,
        path: shown(&path.display().to_string()),
        io,
    })?;
    check_size(path, purpose, data.len() as u64)?;
    Ok(data)
}

/// Reads the whole text file at `path` for `purpose`, as [`read`] does.
pub fn read_to_string(path: &Path, purpose: Purpose) -> Result<String, InputError> {
    String::from_utf8(read(path, purpose)?).map_err(|e| InputError::Read {
        purpose,
        path: shown(&path.display().to_string()),
        io: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// Clears the `O_NONBLOCK` the file was opened with, so that reads and
/// writes behave as on any file.
fn blocking(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor this function's caller owns reads
    // its flags and touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFL changes only the file's status flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Takes an advisory lock on the whole file, as QEMU does on its images:
/// exclusive for a writer, shared for readers, failing at once (with
/// `EWOULDBLOCK`) if another open file holds a conflicting one. The lock
/// belongs to this open file description and goes with its last
/// descriptor.
fn lock(file: &File, writable: bool) -> std::io::Result<()> {
    let how = if writable { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on a descriptor the caller owns; no memory is touched.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dmavm-input-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp_dir("fifo");
        let path = fifo(&dir);
        for purpose in [
            Purpose::Config,
            Purpose::Matrix,
            Purpose::Payload,
            Purpose::Kernel,
            Purpose::Initrd,
            Purpose::Disk { writable: true },
            Purpose::Disk { writable: false },
        ] {
            let err = open(&path, purpose).unwrap_err().to_string();
            assert!(err.contains("is a FIFO (named pipe)"), "{purpose}: {err}");
            assert!(check(&path, purpose).is_err(), "{purpose}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn directories_and_character_devices_are_refused() {
        let dir = temp_dir("dir");
        let err = open(&dir, Purpose::Disk { writable: true }).unwrap_err().to_string();
        assert!(
            err.contains("is a directory: a disk image must be a regular file or a block device"),
            "{err}"
        );
        let err = open(&dir, Purpose::Disk { writable: false }).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = check(&dir, Purpose::Disk { writable: false }).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        for purpose in [Purpose::Config, Purpose::Payload] {
            let err = read(Path::new("/dev/zero"), purpose).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("the {purpose} /dev/zero is a character device: dmavm reads only regular files")
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_read_whole_have_a_cap() {
        let dir = temp_dir("cap");
        let path = dir.join("big.toml");
        let f = File::create(&path).unwrap();
        f.set_len((1 << 20) + 1).unwrap();
        let err = read(&path, Purpose::Config).unwrap_err().to_string();
        assert!(err.ends_with("is 1048577 bytes, more than the 1 MiB a config file may have"), "{err}");
        assert!(check(&path, Purpose::Config).is_err());
        // The kernel is not read whole: no cap.
        assert!(open(&path, Purpose::Kernel).is_ok());
        f.set_len(1 << 20).unwrap();
        assert_eq!(read(&path, Purpose::Config).unwrap().len(), 1 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_and_paths_are_shown_safely() {
        let err = open(Path::new("/nonexistent/a\nb"), Purpose::Payload).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the payload /nonexistent/a\\nb: "), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn disk_locks_conflict_across_open_file_descriptions() {
        let dir = temp_dir("lock");
        let path = dir.join("disk.img");
        File::create(&path).unwrap().set_len(4096).unwrap();
        let rw = Purpose::Disk { writable: true };
        let ro = Purpose::Disk { writable: false };
        // flock locks belong to open file descriptions: each `open` here
        // is a new one, as another process's would be.
        let writer = open(&path, rw).unwrap();
        let err = open(&path, rw).unwrap_err().to_string();
        assert!(err.contains("is in use: another process holds a lock on it"), "{err}");
        assert!(open(&path, ro).is_err(), "a reader must not share a disk another VM writes");
        drop(writer);
        let reader = open(&path, ro).unwrap();
        let second = open(&path, ro).unwrap();
        assert!(open(&path, rw).is_err(), "a writer must not take a disk others read");
        drop((reader, second));
        assert!(open(&path, rw).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_read_only_disk_is_opened_read_only() {
        let dir = temp_dir("ro");
        let path = dir.join("disk.img");
        File::create(&path).unwrap().set_len(4096).unwrap();
        let f = open(&path, Purpose::Disk { writable: false }).unwrap();
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        // SAFETY: F_GETFD on an open descriptor.
        let fd_flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
