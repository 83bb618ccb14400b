//! Choosing how to enter a bzImage. When its payload is an ELF with a PVH
//! entry note (Debian's and most distributions' are), dmavm decompresses
//! it itself and enters it through PVH, as it does an ELF vmlinux: the
//! guest then neither runs its decompressor nor relocates itself, and the
//! decompressed ELF is cached per kernel file for the next boot. Any other
//! bzImage (an LZO payload, protocol before 2.08, no PVH note) keeps the
//! 64-bit boot protocol.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dmavm_machine::input_file::{self, Purpose};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};

use super::bzimage_payload::{self, PayloadError};
use super::decompress::{self, Compression, MAX_DECOMPRESSED};
use super::elf_cache::{Cached, CachedElf, CachedRef, ElfCache, Key};
use super::pvh_note::pvh_entry;

/// Set to `long64` to enter every bzImage through the 64-bit boot
/// protocol, for comparing the two paths (benchmarks, tests).
pub const ENTRY_ENV: &str = "DMAVM_BZIMAGE_ENTRY";

/// A decompressed ELF to load: just decompressed, or in the cache.
#[derive(Debug)]
pub enum ElfImage {
    /// Decompressed by this process.
    Decompressed(Cursor<Vec<u8>>),
    /// Read from the cache as it is loaded.
    Cached(CachedElf),
}

impl Read for ElfImage {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ElfImage::Decompressed(c) => c.read(buf),
            ElfImage::Cached(f) => f.read(buf),
        }
    }
}

impl Seek for ElfImage {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            ElfImage::Decompressed(c) => c.seek(to),
            ElfImage::Cached(f) => f.seek(to),
        }
    }
}

impl ReadVolatile for ElfImage {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        match self {
            ElfImage::Decompressed(c) => c.read_volatile(buf),
            ElfImage::Cached(f) => f.read_volatile(buf),
        }
    }
}

/// How a bzImage is entered.
#[derive(Debug)]
pub enum BzImageEntry {
    /// Through PVH, loading this decompressed ELF.
    Pvh {
        /// The ELF.
        elf: ElfImage,
        /// Where it came from, for the log.
        source: String,
    },
    /// Through the 64-bit boot protocol, for this reason.
    Long64 {
        /// Why not PVH, for the log.
        reason: String,
    },
}

/// Decides for the bzImage at `path`, using `cache` when there is one.
pub fn choose(path: &Path, cache: Option<&ElfCache>) -> Result<BzImageEntry> {
    match std::env::var(ENTRY_ENV).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("auto") => {}
        Ok("long64") => return Ok(long64(format!("{ENTRY_ENV}=long64"))),
        _ => bail!("{ENTRY_ENV} must be `auto` or `long64`"),
    }
    let file = input_file::open(path, Purpose::Kernel)?;
    let meta = file.metadata().with_context(|| format!("cannot read kernel {}", path.display()))?;
    let key = Key::new(path, &meta);
    if let Some(cached) = cache.and_then(|c| c.get(&key, MAX_DECOMPRESSED)) {
        return Ok(match cached {
            // The loader checks the PVH note again; a cached ELF that fails
            // to load is decompressed anew (see `super::load`).
            Cached::PvhElf(elf) => {
                let source = format!("decompressed ELF from the cache in {}", cache_dir(cache));
                BzImageEntry::Pvh { elf: ElfImage::Cached(elf), source }
            }
            Cached::NoPvh => long64("its payload has no PVH entry (cached)".into()),
        });
    }
    decide(path, file, &key, cache)
}

fn cache_dir(cache: Option<&ElfCache>) -> String {
    cache.map_or_else(String::new, |c| c.dir().display().to_string())
}

fn long64(reason: String) -> BzImageEntry {
    BzImageEntry::Long64 { reason }
}

/// Reads and decompresses the payload, then stores the outcome.
fn decide(path: &Path, file: std::fs::File, key: &Key, cache: Option<&ElfCache>) -> Result<BzImageEntry> {
    let mut image = Vec::new();
    file.take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut image)
        .with_context(|| format!("cannot read kernel {}", path.display()))?;
    if image.len() > MAX_DECOMPRESSED {
        bail!("kernel {} is larger than {MAX_DECOMPRESSED} bytes", path.display());
    }
    let started = Instant::now();
    let (format, elf) = match decompressed(&image) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(long64("its payload is compressed with LZO or an unknown format".into())),
        Err(Refusal::Fallback(reason)) => return Ok(long64(reason)),
        Err(Refusal::Hostile(e)) => bail!("kernel {} is not a valid bzImage: {e}", path.display()),
    };
    let took = started.elapsed();
    let (entry, stored) = if pvh_entry(&elf).is_some() {
        let source = format!("{format} payload decompressed in {} ms", took.as_millis());
        let stored = cache.map(|c| c.put(key, &CachedRef::PvhElf(&elf)));
        (BzImageEntry::Pvh { elf: ElfImage::Decompressed(Cursor::new(elf)), source }, stored)
    } else {
        let stored = cache.map(|c| c.put(key, &CachedRef::NoPvh));
        (long64(format!("its {format} payload is no ELF with a PVH entry note")), stored)
    };
    if let Some(Err(e)) = stored {
        log::info!("kernel cache {} not written: {e}", cache_dir(cache));
    }
    Ok(entry)
}

/// Why a payload is not decompressed.
#[derive(Debug)]
enum Refusal {
    /// A bzImage dmavm enters the other way.
    Fallback(String),
    /// A malformed file.
    Hostile(String),
}

/// The payload's format and its decompressed bytes; `None` for a format
/// dmavm does not decompress.
fn decompressed(image: &[u8]) -> Result<Option<(Compression, Vec<u8>)>, Refusal> {
    let payload = match bzimage_payload::payload(image) {
        Ok(p) => p,
        // The 64-bit protocol needs neither field: such a bzImage may
        // still boot that way.
        Err(e @ (PayloadError::OldProtocol(_) | PayloadError::NoPayload(_))) => {
            return Err(Refusal::Fallback(e.to_string()))
        }
        Err(e) => return Err(Refusal::Hostile(e.to_string())),
    };
    let Some(format) = decompress::detect(payload.compressed) else { return Ok(None) };
    decompress::decompress(format, payload.compressed, payload.uncompressed_size, MAX_DECOMPRESSED)
        .map(|elf| Some((format, elf)))
        .map_err(|e| Refusal::Hostile(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::super::bzimage_payload::tests::synthetic_bzimage;
    use super::super::decompress::tests::{compress, sample, ALL};
    use super::super::pvh_note::tests::{elf_with_notes, pvh_elf};
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dmavm-bzimage-pvh-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_bzimage(dir: &Path, format: Compression, elf: &[u8]) -> PathBuf {
        let p = dir.join(format!("vmlinuz-{format}"));
        fs::write(&p, synthetic_bzimage(&compress(format, elf), elf.len())).unwrap();
        p
    }

    fn is_pvh(entry: BzImageEntry, elf: &[u8]) -> bool {
        let BzImageEntry::Pvh { elf: mut image, .. } = entry else { return false };
        let mut bytes = Vec::new();
        image.read_to_end(&mut bytes).unwrap();
        bytes == elf
    }

    #[test]
    fn every_format_with_a_pvh_note_is_entered_through_pvh() {
        let d = temp_dir("formats");
        let elf = pvh_elf(0x100_0040, &sample(200_000));
        for format in ALL {
            let p = write_bzimage(&d, format, &elf);
            assert!(is_pvh(choose(&p, None).unwrap(), &elf), "{format}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_note_lzo_and_old_protocols_keep_the_64_bit_protocol() {
        let d = temp_dir("fallback");
        let plain = elf_with_notes(&[], b"kernel");
        let p = write_bzimage(&d, Compression::Zstd, &plain);
        assert!(matches!(choose(&p, None).unwrap(), BzImageEntry::Long64 { .. }));

        let lzo = d.join("lzo");
        fs::write(&lzo, synthetic_bzimage(b"\x89LZO\x00\r\n\x1a\nrest", 100)).unwrap();
        assert!(matches!(choose(&lzo, None).unwrap(), BzImageEntry::Long64 { .. }));

        let old = d.join("old");
        let mut image = synthetic_bzimage(&compress(Compression::Gzip, &plain), plain.len());
        image[0x206] = 0x07;
        fs::write(&old, &image).unwrap();
        assert!(matches!(choose(&old, None).unwrap(), BzImageEntry::Long64 { .. }));

        let no_payload = d.join("no-payload");
        image[0x206] = 0x0f;
        image[0x24c..0x250].copy_from_slice(&0u32.to_le_bytes());
        fs::write(&no_payload, &image).unwrap();
        assert!(matches!(choose(&no_payload, None).unwrap(), BzImageEntry::Long64 { .. }));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hostile_bzimages_get_one_clear_error() {
        let d = temp_dir("hostile");
        let elf = pvh_elf(0x100_0040, &sample(50_000));
        for format in ALL {
            let good = synthetic_bzimage(&compress(format, &elf), elf.len());
            let p = d.join("bad");
            // The payload cut short (its trailer kept), and a trailer that lies.
            let mut cut = good[..good.len() - 4 - 64].to_vec();
            cut.extend_from_slice(&(elf.len() as u32).to_le_bytes());
            let len_at = 0x24c;
            let length = u32::from_le_bytes(cut[len_at..len_at + 4].try_into().unwrap()) - 64;
            cut[len_at..len_at + 4].copy_from_slice(&length.to_le_bytes());
            fs::write(&p, &cut).unwrap();
            let e = choose(&p, None).unwrap_err().to_string();
            assert!(e.contains("is not a valid bzImage") && e.contains(&format.to_string()), "{format}: {e}");
            assert!(!e.contains('\n'), "{e}");

            let mut lying = good.clone();
            let n = lying.len();
            lying[n - 4..].copy_from_slice(&((elf.len() as u32) * 2).to_le_bytes());
            fs::write(&p, &lying).unwrap();
            assert!(choose(&p, None).is_err(), "{format}");

            // payload_length past the end of the file.
            let mut outside = good.clone();
            outside[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            fs::write(&p, &outside).unwrap();
            assert!(choose(&p, None).unwrap_err().to_string().contains("outside"));
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_cache_is_filled_hit_and_invalidated() {
        let d = temp_dir("cache");
        let cache = ElfCache::at(d.join("cache"));
        let elf = pvh_elf(0x100_0040, &sample(100_000));
        let p = write_bzimage(&d, Compression::Gzip, &elf);

        let first = choose(&p, Some(&cache)).unwrap();
        assert!(matches!(&first, BzImageEntry::Pvh { source, .. } if source.contains("decompressed in")));
        let second = choose(&p, Some(&cache)).unwrap();
        assert!(matches!(&second, BzImageEntry::Pvh { source, .. } if source.contains("from the cache")));
        assert!(is_pvh(second, &elf));

        // The file rewritten with another kernel: a miss, then the new ELF.
        let elf2 = pvh_elf(0x100_0080, &sample(100_001));
        fs::write(&p, synthetic_bzimage(&compress(Compression::Gzip, &elf2), elf2.len())).unwrap();
        let third = choose(&p, Some(&cache)).unwrap();
        assert!(matches!(&third, BzImageEntry::Pvh { source, .. } if source.contains("decompressed in")));
        assert!(is_pvh(third, &elf2));

        // A bzImage without a PVH note is remembered as such.
        let plain = write_bzimage(&d, Compression::Lz4, &elf_with_notes(&[], b"kernel"));
        assert!(matches!(choose(&plain, Some(&cache)).unwrap(), BzImageEntry::Long64 { .. }));
        assert!(
            matches!(choose(&plain, Some(&cache)).unwrap(), BzImageEntry::Long64 { reason } if reason.contains("cached"))
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unusable_cache_never_fails_the_boot() {
        let d = temp_dir("unusable");
        fs::write(d.join("cache"), b"a file where the directory should be").unwrap();
        let cache = ElfCache::at(d.join("cache"));
        let elf = pvh_elf(0x100_0040, &sample(10_000));
        let p = write_bzimage(&d, Compression::Xz, &elf);
        assert!(is_pvh(choose(&p, Some(&cache)).unwrap(), &elf));
        assert!(is_pvh(choose(&p, Some(&cache)).unwrap(), &elf));
        fs::remove_dir_all(&d).unwrap();
    }
}
