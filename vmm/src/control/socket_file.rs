//! The control socket's file: created reachable by its owner only, never
//! over a file that is not a socket, never taken from a live VM.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Permissions of the socket file: connecting needs write permission on
/// it, so only its owner can talk to the VM.
const MODE: u32 = 0o600;

/// Binds and listens on `path`. A socket file left by a VM that ended is
/// replaced; a socket something listens on, or any other kind of file, is
/// refused.
pub fn listen(path: &Path) -> Result<UnixListener> {
    let shown = path.display();
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
    Ok(listener)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::MetadataExt;

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
}
