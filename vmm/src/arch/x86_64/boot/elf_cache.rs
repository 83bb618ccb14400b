//! A per-user cache of decompressed bzImage payloads, so that booting one
//! kernel file again (a boot-test matrix, a benchmark) skips the
//! decompression. An entry is keyed by the kernel file's path, size,
//! modification time, device and inode; any change makes a different key.
//! Entries are written to a temporary file and renamed into place, so a
//! reader sees a whole entry or none; the header's key and length catch
//! anything else (a crash before the data reached the disk, a corrupt
//! file). Every failure here is a cache miss to the caller, never a boot
//! failure: the cache only saves time.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};

/// Start of every entry: the format and its version.
const MAGIC: &[u8; 16] = b"dmavm-kernel-v1\n";
/// Magic, key, flag, length.
const HEADER_LEN: usize = 16 + 32 + 8 + 8;
/// Entries kept; the least recently used go first.
const MAX_ENTRIES: usize = 8;
/// Bytes kept over all entries.
const MAX_BYTES: u64 = 1 << 30;
/// A temporary file older than this was left by a process that died.
const STALE_TEMP: Duration = Duration::from_secs(600);
const ENTRY_SUFFIX: &str = ".kernel";
const TEMP_PREFIX: &str = ".tmp-";

/// What the cache knows about a kernel file.
#[derive(Debug)]
pub enum Cached {
    /// The decompressed ELF, which had a PVH entry when it was stored.
    PvhElf(CachedElf),
    /// Its payload is no ELF with a PVH entry: use the 64-bit protocol.
    NoPvh,
}

/// Identifies one version of one kernel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of `path` as `meta` (taken from the opened file) describes it.
    pub fn new(path: &Path, meta: &Metadata) -> Self {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut h = Sha256::new();
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        for v in [meta.len(), meta.mtime() as u64, meta.mtime_nsec() as u64, meta.dev(), meta.ino()] {
            h.update(v.to_le_bytes());
        }
        Key(h.finalize().into())
    }

    fn file_name(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}{ENTRY_SUFFIX}")
    }
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct ElfCache {
    dir: PathBuf,
}

impl ElfCache {
    /// `$XDG_CACHE_HOME/dmavm/kernels`, else `$HOME/.cache/dmavm/kernels`
    /// (XDG Base Directory Specification); `None` when neither is set to
    /// an absolute path.
    pub fn user() -> Option<Self> {
        let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
        let base = absolute(std::env::var_os("XDG_CACHE_HOME"))
            .or_else(|| absolute(std::env::var_os("HOME")).map(|h| h.join(".cache")))?;
        Some(ElfCache { dir: base.join("dmavm").join("kernels") })
    }

    /// A cache in `dir`.
    #[cfg(test)]
    pub fn at(dir: PathBuf) -> Self {
        ElfCache { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for `key`, if there is a whole one no larger than
    /// `max_elf` bytes; marks it recently used. The ELF is read from the
    /// entry's file as it is loaded, not copied first.
    pub fn get(&self, key: &Key, max_elf: usize) -> Option<Cached> {
        let path = self.dir.join(key.file_name());
        let mut file = File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > (HEADER_LEN + max_elf) as u64 {
            return None;
        }
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header).ok()?;
        let (magic, rest) = header.split_at(16);
        let (stored_key, rest) = rest.split_at(32);
        let (flag, len) = rest.split_at(8);
        let len = u64::from_le_bytes(len.try_into().ok()?);
        if magic != MAGIC || stored_key != key.0 || meta.len() != HEADER_LEN as u64 + len {
            return None;
        }
        let cached = match u64::from_le_bytes(flag.try_into().ok()?) {
            1 => Cached::PvhElf(CachedElf { file, len }),
            0 if len == 0 => Cached::NoPvh,
            _ => return None,
        };
        // Least recently used goes first: a hit makes this one the newest.
        if let Ok(f) = File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(cached)
    }

    /// Stores `entry` under `key`, then trims the cache to its bounds.
    pub fn put(&self, key: &Key, entry: &CachedRef<'_>) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let (flag, elf): (u64, &[u8]) = match entry {
            CachedRef::PvhElf(elf) => (1, elf),
            CachedRef::NoPvh => (0, &[]),
        };
        let name = key.file_name();
        let temp = self.dir.join(format!("{TEMP_PREFIX}{}-{name}", std::process::id()));
        let written = (|| {
            let mut f = File::options().write(true).create_new(true).open(&temp)?;
            f.write_all(MAGIC)?;
            f.write_all(&key.0)?;
            f.write_all(&flag.to_le_bytes())?;
            f.write_all(&(elf.len() as u64).to_le_bytes())?;
            f.write_all(elf)?;
            // No fsync: a crash that loses the data leaves an entry whose
            // length disagrees with its header, which `get` ignores.
            fs::rename(&temp, self.dir.join(&name))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        self.trim(&name);
        Ok(())
    }

    /// Removes the least recently used entries beyond the bounds (never
    /// `keep`, the one just written) and stale temporary files.
    fn trim(&self, keep: &str) {
        let Ok(dir) = fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in dir.flatten() {
            let (Ok(meta), name) = (e.metadata(), e.file_name()) else { continue };
            let name = name.to_string_lossy();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(TEMP_PREFIX) {
                if now.duration_since(modified).is_ok_and(|age| age > STALE_TEMP) {
                    let _ = fs::remove_file(e.path());
                }
            } else if name.ends_with(ENTRY_SUFFIX) && name != keep && meta.is_file() {
                entries.push((modified, meta.len(), e.path()));
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        let kept = fs::metadata(self.dir.join(keep)).map(|m| m.len()).unwrap_or(0);
        let mut total = kept;
        for (i, (_, len, path)) in entries.iter().enumerate() {
            total = total.saturating_add(*len);
            if i + 1 >= MAX_ENTRIES || total > MAX_BYTES {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// A cached ELF: a view of the entry's file past its header, read where
/// it lies. Entries are replaced by rename, never rewritten, so the open
/// file keeps the bytes `get` checked the length of.
#[derive(Debug)]
pub struct CachedElf {
    file: File,
    len: u64,
}

impl Read for CachedElf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for CachedElf {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = HEADER_LEN as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => {
                self.file.stream_position()?.checked_sub(base).and_then(|p| p.checked_add_signed(d))
            }
        };
        let Some(target) = target.and_then(|t| t.checked_add(base)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the cached ELF",
            ));
        };
        Ok(self.file.seek(SeekFrom::Start(target))? - base)
    }
}

impl ReadVolatile for CachedElf {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        self.file.read_volatile(buf)
    }
}

/// An entry to store (borrowing the ELF).
#[derive(Debug, Clone, Copy)]
pub enum CachedRef<'a> {
    /// See [`Cached::PvhElf`].
    PvhElf(&'a [u8]),
    /// See [`Cached::NoPvh`].
    NoPvh,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dmavm-elf-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn kernel_file(dir: &Path, content: &[u8]) -> (PathBuf, Key) {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join("vmlinuz");
        fs::write(&p, content).unwrap();
        let key = Key::new(&p, &fs::metadata(&p).unwrap());
        (p, key)
    }

    /// The ELF of a `PvhElf` hit, read whole; `None` for a miss or `NoPvh`.
    fn elf(cache: &ElfCache, key: &Key, max: usize) -> Option<Vec<u8>> {
        match cache.get(key, max)? {
            Cached::PvhElf(mut e) => {
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, e.len);
                Some(bytes)
            }
            Cached::NoPvh => None,
        }
    }

    #[test]
    fn cached_elf_reads_and_seeks_within_its_bytes() {
        let d = temp_dir("seek");
        let cache = ElfCache::at(d.join("cache"));
        let (_, key) = kernel_file(&d, b"bzimage");
        cache.put(&key, &CachedRef::PvhElf(b"0123456789")).unwrap();
        let Some(Cached::PvhElf(mut e)) = cache.get(&key, 1 << 20) else { panic!("miss") };
        let mut b = [0u8; 3];
        assert_eq!(e.seek(SeekFrom::Start(4)).unwrap(), 4);
        e.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"456");
        assert_eq!(e.seek(SeekFrom::Current(-2)).unwrap(), 5);
        assert_eq!(e.seek(SeekFrom::End(-1)).unwrap(), 9);
        e.read_exact(&mut b[..1]).unwrap();
        assert_eq!(b[0], b'9');
        assert!(e.seek(SeekFrom::Current(-11)).is_err());
        assert!(e.seek(SeekFrom::End(-11)).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn miss_then_hit_for_both_kinds() {
        let d = temp_dir("hit");
        let cache = ElfCache::at(d.join("cache"));
        let (_, key) = kernel_file(&d, b"bzimage");
        assert!(cache.get(&key, 1 << 20).is_none());
        cache.put(&key, &CachedRef::PvhElf(b"\x7fELF...")).unwrap();
        assert_eq!(elf(&cache, &key, 1 << 20), Some(b"\x7fELF...".to_vec()));
        cache.put(&key, &CachedRef::NoPvh).unwrap();
        assert!(matches!(cache.get(&key, 1 << 20), Some(Cached::NoPvh)));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_changed_kernel_file_misses() {
        let d = temp_dir("changed");
        let cache = ElfCache::at(d.join("cache"));
        let (p, key) = kernel_file(&d, b"bzimage one");
        cache.put(&key, &CachedRef::PvhElf(b"elf one")).unwrap();
        // Same size, another modification time.
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        let key2 = Key::new(&p, &fs::metadata(&p).unwrap());
        assert_ne!(key, key2);
        assert!(cache.get(&key2, 1 << 20).is_none());
        // Another size.
        fs::write(&p, b"bzimage number two").unwrap();
        let key3 = Key::new(&p, &fs::metadata(&p).unwrap());
        assert_ne!(key2, key3);
        assert!(cache.get(&key3, 1 << 20).is_none());
        // Another path, same content.
        let q = d.join("copy");
        fs::copy(&p, &q).unwrap();
        assert_ne!(Key::new(&q, &fs::metadata(&q).unwrap()), key3);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncated_corrupt_or_oversized_entries_miss() {
        let d = temp_dir("corrupt");
        let cache = ElfCache::at(d.join("cache"));
        let (_, key) = kernel_file(&d, b"bzimage");
        let elf = vec![7u8; 4096];
        cache.put(&key, &CachedRef::PvhElf(&elf)).unwrap();
        let entry = cache.dir().join(key.file_name());
        let whole = fs::read(&entry).unwrap();

        fs::write(&entry, &whole[..whole.len() - 1]).unwrap();
        assert!(cache.get(&key, 1 << 20).is_none(), "truncated");
        let mut bad = whole.clone();
        bad[20] ^= 1;
        fs::write(&entry, &bad).unwrap();
        assert!(cache.get(&key, 1 << 20).is_none(), "wrong key in the header");
        let mut bad = whole.clone();
        bad[48] = 9;
        fs::write(&entry, &bad).unwrap();
        assert!(cache.get(&key, 1 << 20).is_none(), "unknown flag");
        fs::write(&entry, &whole).unwrap();
        assert!(cache.get(&key, 4095).is_none(), "over the size bound");
        assert_eq!(self::elf(&cache, &key, 4096), Some(elf));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_cache_fails_put_without_leaving_files() {
        let d = temp_dir("unwritable");
        fs::create_dir_all(&d).unwrap();
        // The cache directory's place is taken by a file.
        fs::write(d.join("cache"), b"").unwrap();
        let cache = ElfCache::at(d.join("cache"));
        let (_, key) = kernel_file(&d, b"bzimage");
        assert!(cache.put(&key, &CachedRef::NoPvh).is_err());
        assert!(cache.get(&key, 1 << 20).is_none());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn least_recently_used_entries_are_evicted() {
        let d = temp_dir("evict");
        let cache = ElfCache::at(d.join("cache"));
        let keys: Vec<Key> = (0..MAX_ENTRIES + 2)
            .map(|i| {
                let (_, key) = kernel_file(&d.join(i.to_string()), b"bzimage");
                cache.put(&key, &CachedRef::PvhElf(b"elf")).unwrap();
                // Distinct ages: the oldest is key 0.
                let f = File::options().write(true).open(cache.dir().join(key.file_name())).unwrap();
                f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64)).unwrap();
                key
            })
            .collect();
        // Each put trims to MAX_ENTRIES before the next one ages.
        let kept = keys.iter().filter(|k| cache.get(k, 1 << 20).is_some()).count();
        assert_eq!(kept, MAX_ENTRIES);
        assert!(cache.get(&keys[0], 1 << 20).is_none());
        assert!(cache.get(&keys[MAX_ENTRIES + 1], 1 << 20).is_some());
        fs::remove_dir_all(&d).unwrap();
    }
}
