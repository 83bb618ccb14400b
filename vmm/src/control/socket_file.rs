//! The control socket's file: created reachable by its owner only, never
//! over a file that is not a socket, never taken from a live VM, and
//! removed when the VM ends if it is still the one this VM made.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The listening control socket and its file.
#[derive(Debug)]
pub struct ControlSocket {
    /// Non-blocking, listening.
    pub listener: UnixListener,
    /// What removes the file when the VM ends.
    pub file: SocketFile,
}

/// The socket's file, to remove at the end: its directory (held open, so
/// the main thread's seccomp filter can allow removing names in it and
/// nowhere else), its name there, and the device and inode `bind` gave it
/// (a file put in its place meanwhile is left alone).
#[derive(Debug)]
pub struct SocketFile {
    dir: OwnedFd,
    name: CString,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The directory descriptor, the only one the main thread may remove
    /// names under.
    pub fn dir_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// Removes the file if it is still the socket this VM bound. Uses the
    /// raw `newfstatat` and `unlinkat` calls (relative to the directory),
    /// which the main thread's filter allows for that directory only.
    pub fn remove(&self) -> std::io::Result<()> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: `name` is a NUL-terminated string, `st` room for one
        // `struct stat`; a bad descriptor or name only makes the call fail.
        let r = unsafe {
            libc::syscall(
                libc::SYS_newfstatat,
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // Removed by someone else: nothing to do.
            return if e.kind() == ErrorKind::NotFound { Ok(()) } else { Err(e) };
        }
        // SAFETY: newfstatat succeeded and filled `st`.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::useless_conversion)] // dev_t and ino_t differ between targets
        if u64::from(st.st_dev) != self.dev || u64::from(st.st_ino) != self.ino {
            return Ok(());
        }
        // SAFETY: as above; unlinkat(2) of a name in an open directory.
        let r = unsafe { libc::syscall(libc::SYS_unlinkat, self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The directory `path` names its file in, held open (`O_PATH`), and the
/// file's name.
fn directory_of(path: &Path) -> Result<(OwnedFd, CString)> {
    let shown = path.display();
    let name = path.file_name().with_context(|| format!("--api-socket {shown}: the path names no file"))?;
    let name = CString::new(name.as_bytes())
        .with_context(|| format!("--api-socket {shown}: the path holds a NUL byte"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("--api-socket {shown}: the path holds a NUL byte"))?;
    // SAFETY: `c_dir` is NUL-terminated; open(2) returns a new descriptor
    // or -1.
    let fd = unsafe { libc::open(c_dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        bail!("--api-socket {shown}: cannot open its directory {}: {e}", dir.display());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, name))
}

/// Permissions of the socket file: connecting needs write permission on
/// it, so only its owner can talk to the VM.
const MODE: u32 = 0o600;

/// Binds and listens on `path`. A socket file left by a VM that ended is
/// replaced; a socket something listens on, or any other kind of file, is
/// refused.
pub fn listen(path: &Path) -> Result<ControlSocket> {
    let shown = path.display();
    let (dir, name) = directory_of(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("--api-socket {shown}: the path exists and is not a socket; remove it or give another path")
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => bail!("--api-socket {shown}: another process listens on it (a running dmavm?)"),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("--api-socket {shown}: cannot remove the stale socket"))?;
            }
            Err(e) => bail!("--api-socket {shown}: cannot tell whether the socket is in use: {e}"),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("--api-socket {shown}: {e}"),
    }
    // bind(2) creates the file with the process's umask applied: with this
    // one it is never reachable by others, not even for an instant. Only
    // the main thread runs yet, so no other file is created meanwhile.
    // SAFETY: umask(2) only swaps the process's file creation mask.
    let old = unsafe { libc::umask(0o777 & !MODE) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("--api-socket {shown}: cannot listen"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))
        .with_context(|| format!("--api-socket {shown}: cannot set its mode"))?;
    listener.set_nonblocking(true).with_context(|| format!("--api-socket {shown}"))?;
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("--api-socket {shown}"))?;
    Ok(ControlSocket { listener, file: SocketFile { dir, name, dev: meta.dev(), ino: meta.ino() } })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dmavm-socket-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_socket_is_the_owners_only() {
        let dir = temp_dir("mode");
        let path = dir.join("api.sock");
        let _listener = listen(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_live_socket_and_other_files_are_refused_a_stale_one_replaced() {
        let dir = temp_dir("reuse");
        let path = dir.join("api.sock");
        let live = listen(&path).unwrap();
        let err = listen(&path).unwrap_err().to_string();
        assert!(err.contains("another process listens on it"), "{err}");
        // A VM that ended without removing its file (killed).
        drop(live);
        // The file outlives its listener: stale, replaced.
        assert!(path.exists());
        let _again = listen(&path).unwrap();
        let file = dir.join("data");
        std::fs::write(&file, b"keep me").unwrap();
        let err = listen(&file).unwrap_err().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The VM's end removes its own socket file, through the directory
    /// it held open, and leaves alone a file put in its place or one
    /// already gone.
    #[test]
    fn the_end_removes_the_socket_it_made_and_nothing_else() {
        let dir = temp_dir("remove");
        let path = dir.join("api.sock");
        let socket = listen(&path).unwrap();
        socket.file.remove().unwrap();
        assert!(!path.exists());
        // Gone already: fine.
        socket.file.remove().unwrap();
        let socket = listen(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        socket.file.remove().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A bare name is in the working directory.
    #[test]
    fn a_bare_name_is_in_the_working_directory() {
        let (dir, name) = directory_of(Path::new("rel.sock")).unwrap();
        assert_eq!(name.as_bytes(), b"rel.sock");
        let here = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap();
        assert_eq!(here, std::env::current_dir().unwrap());
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = listen(Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("names no file"), "{err}");
    }
}
