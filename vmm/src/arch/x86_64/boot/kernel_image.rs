//! Recognising kernel images.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use dmavm_machine::input_file::{self, Purpose};

/// A kernel image format dmavm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// An x86 bzImage (boot protocol header "HdrS" at 0x202).
    BzImage,
    /// An ELF file (vmlinux).
    Elf,
}

/// Identifies `header`, the first bytes of an image.
pub fn identify(header: &[u8]) -> Option<ImageKind> {
    if header.starts_with(b"\x7fELF") {
        Some(ImageKind::Elf)
    } else if header.get(0x202..0x206) == Some(b"HdrS") {
        Some(ImageKind::BzImage)
    } else {
        None
    }
}

/// Opens `path` and checks that it is a kernel image dmavm can load.
pub fn check_image(path: &Path) -> Result<ImageKind> {
    let mut header = Vec::with_capacity(0x208);
    input_file::open(path, Purpose::Kernel)?
        .take(0x208)
        .read_to_end(&mut header)
        .with_context(|| format!("cannot read kernel {}", path.display()))?;
    match identify(&header) {
        Some(kind) => Ok(kind),
        None => bail!("kernel {} is neither a bzImage nor an ELF vmlinux", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_formats() {
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(identify(&bz), Some(ImageKind::BzImage));
        assert_eq!(identify(b"\x7fELF\x02\x01"), Some(ImageKind::Elf));
        assert_eq!(identify(b"#!/bin/sh\n"), None);
        assert_eq!(identify(&[]), None);
    }
}
