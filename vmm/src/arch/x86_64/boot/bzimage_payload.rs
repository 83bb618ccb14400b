//! Finding the compressed kernel inside a bzImage: the setup header's
//! `payload_offset` and `payload_length` (boot protocol 2.08+,
//! Documentation/arch/x86/boot.rst) and the 4-byte little-endian
//! uncompressed size that Linux's build appends to every compressed payload
//! (`size_append` in scripts/Makefile.lib).

use thiserror::Error;

/// Offset of `setup_sects` in the boot sector.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of the protocol `version`.
const VERSION: usize = 0x206;
/// Offset of `payload_offset` (relative to the protected-mode code).
const PAYLOAD_OFFSET: usize = 0x248;
/// Offset of `payload_length`.
const PAYLOAD_LENGTH: usize = 0x24c;
/// The first protocol with `payload_offset`/`payload_length`.
const MIN_VERSION: u16 = 0x0208;
/// `setup_sects` 0 means 4 (boot.rst).
const DEFAULT_SETUP_SECTS: usize = 4;
/// Bytes of the uncompressed-size trailer.
const SIZE_TRAILER: usize = 4;

/// Why a bzImage's payload cannot be located.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The file ends inside the setup header.
    #[error("the bzImage ends inside its setup header ({0} bytes)")]
    ShortHeader(usize),
    /// The header predates `payload_offset`.
    #[error("boot protocol {0:#06x} predates payload_offset (2.08)")]
    OldProtocol(u16),
    /// `payload_length` is too short to hold even the size trailer: the
    /// header describes no payload.
    #[error("its header describes no payload (payload_length {0})")]
    NoPayload(u32),
    /// The payload reaches past the end of the file or is too short to
    /// hold the size trailer.
    #[error("payload_offset {offset:#x} and payload_length {length:#x} lie outside the {file} bytes of the bzImage")]
    OutOfFile {
        /// From the protected-mode code's start.
        offset: u64,
        /// `payload_length`.
        length: u32,
        /// File size.
        file: usize,
    },
}

/// The compressed kernel of a bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The compressed stream, without the size trailer.
    pub compressed: &'a [u8],
    /// The uncompressed size the trailer states (modulo 2^32).
    pub uncompressed_size: u32,
}

fn u16_at(image: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([image[at], image[at + 1]])
}

fn u32_at(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]])
}

/// Locates the payload of the bzImage `image` (the whole file).
pub fn payload(image: &[u8]) -> Result<Payload<'_>, PayloadError> {
    if image.len() < PAYLOAD_LENGTH + 4 {
        return Err(PayloadError::ShortHeader(image.len()));
    }
    let version = u16_at(image, VERSION);
    if version < MIN_VERSION {
        return Err(PayloadError::OldProtocol(version));
    }
    let sects = match image[SETUP_SECTS] {
        0 => DEFAULT_SETUP_SECTS,
        n => usize::from(n),
    };
    let offset = u64::from(u32_at(image, PAYLOAD_OFFSET)) + ((sects as u64 + 1) * 512);
    let length = u32_at(image, PAYLOAD_LENGTH);
    let out_of_file = PayloadError::OutOfFile { offset, length, file: image.len() };
    let end = offset + u64::from(length);
    if (length as usize) < SIZE_TRAILER {
        return Err(PayloadError::NoPayload(length));
    }
    if end > image.len() as u64 {
        return Err(out_of_file);
    }
    // Both fit in the slice's length, checked above.
    let (start, end) = (offset as usize, end as usize);
    let trailer = end - SIZE_TRAILER;
    Ok(Payload { compressed: &image[start..trailer], uncompressed_size: u32_at(image, trailer) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bzImage with `setup_sects` 1, protocol 2.15 and `payload`
    /// followed by its size trailer for `uncompressed` bytes, as Linux's
    /// build lays it out.
    pub(crate) fn synthetic_bzimage(payload: &[u8], uncompressed: usize) -> Vec<u8> {
        let setup_sects = 1usize;
        let payload_offset = 0x40usize;
        let mut image = vec![0u8; (setup_sects + 1) * 512 + payload_offset];
        image[SETUP_SECTS] = setup_sects as u8;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(payload_offset as u32).to_le_bytes());
        let length = (payload.len() + SIZE_TRAILER) as u32;
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&length.to_le_bytes());
        image.extend_from_slice(payload);
        image.extend_from_slice(&(uncompressed as u32).to_le_bytes());
        image
    }

    #[test]
    fn finds_the_payload_and_its_size() {
        let image = synthetic_bzimage(b"compressed", 1234);
        let p = payload(&image).unwrap();
        assert_eq!(p.compressed, b"compressed");
        assert_eq!(p.uncompressed_size, 1234);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let mut image = synthetic_bzimage(b"", 0);
        image[SETUP_SECTS] = 0;
        // 4 sectors + boot sector + 0x40 is past this 1-sector image.
        assert!(matches!(payload(&image), Err(PayloadError::OutOfFile { offset: 0xa40, .. })));
    }

    #[test]
    fn rejects_old_protocols_short_files_and_payloads_outside_the_file() {
        let mut image = synthetic_bzimage(b"abc", 3);
        image[VERSION..VERSION + 2].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(payload(&image), Err(PayloadError::OldProtocol(0x0207)));

        assert_eq!(payload(&image[..0x200]), Err(PayloadError::ShortHeader(0x200)));

        let image = synthetic_bzimage(b"abc", 3);
        assert!(matches!(payload(&image[..image.len() - 1]), Err(PayloadError::OutOfFile { .. })));

        let mut image = synthetic_bzimage(b"abc", 3);
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(payload(&image), Err(PayloadError::OutOfFile { .. })));
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(payload(&image), Err(PayloadError::NoPayload(3)));
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&7u32.to_le_bytes());
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(payload(&image), Err(PayloadError::OutOfFile { .. })));
    }
}
