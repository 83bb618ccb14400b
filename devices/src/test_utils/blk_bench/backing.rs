//! The benchmarks' disk: a 256 MiB file on tmpfs, filled once with a
//! pattern the driver can check reads against.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Result;

/// Size of the backing file.
pub const DISK_SIZE: u64 = 256 << 20;

/// The backing file, removed when dropped.
#[derive(Debug)]
pub struct Backing {
    path: PathBuf,
    /// Whether it is on tmpfs (`/dev/shm`); the report says so if not.
    pub tmpfs: bool,
}

impl Backing {
    /// Creates and fills the file; every 8-byte word holds its own offset.
    pub fn create() -> Result<(Self, File)> {
        let shm = Path::new("/dev/shm");
        let (dir, tmpfs) =
            if shm.is_dir() { (shm.to_path_buf(), true) } else { (std::env::temp_dir(), false) };
        let path = dir.join(format!("dmavm-blk-bench-{}", std::process::id()));
        let backing = Self { path, tmpfs };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&backing.path)
            .map_err(|e| format!("cannot create {}: {e}", backing.path.display()))?;
        let mut chunk = vec![0u8; 1 << 20];
        for base in (0..DISK_SIZE).step_by(chunk.len()) {
            for (i, word) in chunk.chunks_exact_mut(8).enumerate() {
                word.copy_from_slice(&(base + 8 * i as u64).to_le_bytes());
            }
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        Ok((backing, file))
    }

    /// Where the file is, for the report.
    pub fn describe(&self) -> String {
        if self.tmpfs {
            "backing file on tmpfs (/dev/shm)".to_string()
        } else {
            format!("backing file in {} (no /dev/shm: not necessarily tmpfs)", std::env::temp_dir().display())
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The same sequential reads as plain `pread(2)`s into one buffer: the
/// floor under the device model's figures. Returns ns per read.
pub fn pread_baseline(file: &File, size: u32, measure: std::time::Duration) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; size as usize];
    let mut offset = 0;
    let mut reads = 0u64;
    let start = std::time::Instant::now();
    while start.elapsed() < measure {
        for _ in 0..1024 {
            file.read_exact_at(&mut buf, offset)?;
            offset = (offset + u64::from(size)) % DISK_SIZE;
        }
        reads += 1024;
    }
    Ok(start.elapsed().as_nanos() as f64 / reads as f64)
}
