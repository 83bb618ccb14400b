//! Decompressing a bzImage's payload with a bound on the output: every
//! format Linux's x86 build offers except LZO, told apart by magic
//! (the formats' own headers, as Linux's `decompress_method` does).

use std::fmt;
use std::io::Read;

use thiserror::Error;

/// Most bytes a decompressed kernel may have: far above any real vmlinux
/// (Debian's is 55 MiB), low enough that a hostile payload cannot make
/// dmavm allocate without bound.
pub const MAX_DECOMPRESSED: usize = 512 << 20;
/// Dictionary memory the LZMA and XZ decoders may use, in KiB. Linux
/// builds use 32 MiB (xz) and 64 MiB (`lzma -9`) dictionaries.
const LZMA_MEMORY_LIMIT_KIB: u32 = 128 << 10;
/// Linux's LZ4 payloads are the legacy frame format: this magic, then
/// blocks each preceded by its compressed size (lib/decompress_unlz4.c).
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Largest uncompressed block of the legacy LZ4 format (`lz4 -l`).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// A compression format of a bzImage payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `CONFIG_KERNEL_GZIP`.
    Gzip,
    /// `CONFIG_KERNEL_BZIP2`.
    Bzip2,
    /// `CONFIG_KERNEL_LZMA` (the .lzma "alone" format).
    Lzma,
    /// `CONFIG_KERNEL_XZ` (with the x86 BCJ filter).
    Xz,
    /// `CONFIG_KERNEL_LZ4` (legacy frames).
    Lz4,
    /// `CONFIG_KERNEL_ZSTD`.
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// Why a payload did not decompress.
#[derive(Debug, Error)]
pub enum DecompressError {
    /// The decoder failed: a corrupt or truncated stream.
    #[error("its {format} payload is corrupt or truncated: {reason}")]
    Corrupt {
        /// The format.
        format: Compression,
        /// The decoder's words.
        reason: String,
    },
    /// More output than `limit` bytes.
    #[error("its {format} payload decompresses to more than {limit} bytes")]
    TooLarge {
        /// The format.
        format: Compression,
        /// The bound.
        limit: usize,
    },
    /// The output length disagrees with the size trailer.
    #[error("its {format} payload decompressed to {actual} bytes where the image says {expected}")]
    SizeMismatch {
        /// The format.
        format: Compression,
        /// Bytes produced.
        actual: usize,
        /// The trailer's size (modulo 2^32).
        expected: u32,
    },
}

/// The format whose magic starts `data`; `None` for LZO or anything else.
pub fn detect(data: &[u8]) -> Option<Compression> {
    let formats: [(&[u8], Compression); 6] = [
        (&[0x1f, 0x8b], Compression::Gzip),
        (b"BZh", Compression::Bzip2),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
        (&LZ4_LEGACY_MAGIC, Compression::Lz4),
        (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        // lc=3 lp=0 pb=2, the properties every `lzma` preset uses, then a
        // dictionary size below 16 MiB's top byte.
        (&[0x5d, 0x00], Compression::Lzma),
    ];
    formats.iter().find(|(magic, _)| data.starts_with(magic)).map(|&(_, c)| c)
}

/// Decompresses `data` in `format`, producing at most `limit` bytes, and
/// checks the result's length against `expected` (the size trailer).
pub fn decompress(
    format: Compression,
    data: &[u8],
    expected: u32,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e: &dyn fmt::Display| DecompressError::Corrupt { format, reason: e.to_string() };
    let capacity = (expected as usize).min(limit);
    let out = match format {
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data), format, capacity, limit)?,
        Compression::Bzip2 => read_bounded(bzip2::read::BzDecoder::new(data), format, capacity, limit)?,
        Compression::Xz => read_bounded(
            lzma_rust2::XzReader::new_mem_limit(data, false, LZMA_MEMORY_LIMIT_KIB),
            format,
            capacity,
            limit,
        )?,
        Compression::Lzma => {
            let reader = lzma_rust2::LzmaReader::new_mem_limit(data, LZMA_MEMORY_LIMIT_KIB, None)
                .map_err(|e| corrupt(&e))?;
            read_bounded(reader, format, capacity, limit)?
        }
        Compression::Zstd => {
            let reader = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| corrupt(&e))?;
            read_bounded(reader, format, capacity, limit)?
        }
        Compression::Lz4 => lz4_legacy(data, capacity, limit)?,
    };
    if out.len() as u32 != expected {
        return Err(DecompressError::SizeMismatch { format, actual: out.len(), expected });
    }
    Ok(out)
}

fn read_bounded(
    reader: impl Read,
    format: Compression,
    capacity: usize,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(capacity);
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt { format, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { format, limit });
    }
    Ok(out)
}

/// The legacy LZ4 frame format: the magic, then (size, block) pairs until
/// the input ends; a repeated magic starts a concatenated stream.
fn lz4_legacy(data: &[u8], capacity: usize, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let format = Compression::Lz4;
    let corrupt = |reason: String| DecompressError::Corrupt { format, reason };
    let mut out = Vec::with_capacity(capacity);
    let mut rest = data.strip_prefix(&LZ4_LEGACY_MAGIC[..]).ok_or_else(|| corrupt("no magic".into()))?;
    while !rest.is_empty() {
        let Some((size, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt(format!("{} stray bytes at the end", rest.len())));
        };
        if *size == LZ4_LEGACY_MAGIC {
            rest = tail;
            continue;
        }
        let size = u32::from_le_bytes(*size) as usize;
        let Some((block, tail)) = tail.split_at_checked(size) else {
            return Err(corrupt(format!("a {size}-byte block with {} bytes left", tail.len())));
        };
        let room = LZ4_LEGACY_BLOCK.min(limit - out.len());
        let start = out.len();
        out.resize(start + room, 0);
        match lz4_flex::block::decompress_into(block, &mut out[start..]) {
            Ok(n) => out.truncate(start + n),
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if room < LZ4_LEGACY_BLOCK => {
                return Err(DecompressError::TooLarge { format, limit })
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// Compresses `data` as Linux's build would (before the size
    /// trailer), with the crates' encoders.
    pub(crate) fn compress(format: Compression, data: &[u8]) -> Vec<u8> {
        match format {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut options = lzma_rust2::XzOptions::with_preset(1);
                options.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
                let mut e = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Lzma => {
                // Unknown size and an end marker, as `lzma` in a pipe writes.
                let options = lzma_rust2::LzmaOptions::with_preset(1);
                let mut e = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &options, None).unwrap();
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Lz4 => {
                let mut out = LZ4_LEGACY_MAGIC.to_vec();
                for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
                    let block = lz4_flex::block::compress(chunk);
                    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }

    pub(crate) const ALL: [Compression; 6] = [
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Lzma,
        Compression::Xz,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Compressible but not trivial: what a decoder must get exactly right.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7) ^ (i >> 5)) as u8).collect()
    }

    #[test]
    fn every_format_round_trips_and_is_detected() {
        let data = sample(300_000);
        for format in ALL {
            let packed = compress(format, &data);
            assert_eq!(detect(&packed), Some(format), "{format}");
            let out = decompress(format, &packed, data.len() as u32, MAX_DECOMPRESSED).unwrap();
            assert!(out == data, "{format}: output differs");
        }
    }

    #[test]
    fn lzo_and_garbage_are_not_detected() {
        assert_eq!(detect(b"\x89LZO\x00\r\n\x1a\n"), None);
        assert_eq!(detect(b"\x7fELF"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn truncated_streams_fail_with_an_error() {
        let data = sample(100_000);
        for format in ALL {
            let packed = compress(format, &data);
            for cut in [1, packed.len() / 2, packed.len() - 1] {
                let r = decompress(format, &packed[..cut], data.len() as u32, MAX_DECOMPRESSED);
                assert!(r.is_err(), "{format} cut at {cut} of {} decompressed", packed.len());
            }
        }
    }

    #[test]
    fn corrupted_streams_fail_or_disagree_with_the_trailer() {
        let data = sample(100_000);
        for format in ALL {
            let mut packed = compress(format, &data);
            let mid = packed.len() / 2;
            for b in &mut packed[mid..mid + 16] {
                *b ^= 0x5a;
            }
            if let Ok(out) = decompress(format, &packed, data.len() as u32, MAX_DECOMPRESSED) {
                // A format without a checksum may decode garbage of the
                // right length; it must not be the original.
                assert!(out != data, "{format}: corruption went unnoticed");
            }
        }
    }

    #[test]
    fn output_is_bounded() {
        let data = vec![0u8; 2 << 20];
        for format in ALL {
            let packed = compress(format, &data);
            match decompress(format, &packed, data.len() as u32, 1 << 20) {
                Err(DecompressError::TooLarge { limit, .. }) => assert_eq!(limit, 1 << 20),
                other => panic!("{format}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_size_trailer_is_an_error() {
        let data = sample(5000);
        for format in ALL {
            let packed = compress(format, &data);
            let r = decompress(format, &packed, 4999, MAX_DECOMPRESSED);
            assert!(
                matches!(r, Err(DecompressError::SizeMismatch { actual: 5000, expected: 4999, .. })),
                "{format}: {r:?}"
            );
        }
    }

    #[test]
    fn hostile_lz4_block_sizes_are_errors() {
        let mut packed = LZ4_LEGACY_MAGIC.to_vec();
        packed.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decompress(Compression::Lz4, &packed, 0, 1 << 20),
            Err(DecompressError::Corrupt { .. })
        ));
        packed.truncate(6);
        assert!(matches!(
            decompress(Compression::Lz4, &packed, 0, 1 << 20),
            Err(DecompressError::Corrupt { .. })
        ));
    }
}
