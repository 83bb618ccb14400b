//! The harness's private temporary folder (initrd, disk images, logs not
//! kept), removed with everything in it when dropped, also after Ctrl-C
//! (termination.rs).

use std::path::{Path, PathBuf};

use crate::error::{io, Error};

/// A private temporary folder, removed with everything in it when
/// dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new folder under `$TMPDIR` (or /tmp), readable by its owner only.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = base.join(format!("{prefix}.{}.{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io(format!("creating the temporary folder {}", path.display())))?;
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
