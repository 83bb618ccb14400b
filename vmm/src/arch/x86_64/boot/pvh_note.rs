//! Finding the PVH entry point of an ELF64 kernel image in memory: the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note (xen/include/public/elfnote.h) in a
//! `PT_NOTE` segment. Lets dmavm decide on PVH before loading anything.

/// `PT_NOTE` (ELF gABI).
const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// The note's owner.
const XEN_NOTE_NAME: &[u8] = b"Xen\0";
/// Size of an ELF64 program header.
const PHDR_SIZE: usize = 56;

fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    field(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    field(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<usize> {
    field(bytes, at).map(u64::from_le_bytes).and_then(|v| usize::try_from(v).ok())
}

/// The 32-bit PVH entry of the little-endian ELF64 image `elf`, or `None`
/// when it is not one or has no such note. Never panics on any input.
pub fn pvh_entry(elf: &[u8]) -> Option<u32> {
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB.
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let phoff = u64_at(elf, 0x20)?;
    let phentsize = usize::from(u16_at(elf, 0x36)?);
    let phnum = usize::from(u16_at(elf, 0x38)?);
    if phentsize < PHDR_SIZE {
        return None;
    }
    (0..phnum).find_map(|i| {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(elf, ph)? != PT_NOTE {
            return None;
        }
        let offset = u64_at(elf, ph + 8)?;
        let size = u64_at(elf, ph + 32)?;
        notes_entry(elf.get(offset..offset.checked_add(size)?)?)
    })
}

/// Walks one `PT_NOTE` segment: (namesz, descsz, type, name, desc), name
/// and desc each padded to 4 bytes.
fn notes_entry(mut notes: &[u8]) -> Option<u32> {
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0)? as usize;
        let descsz = u32_at(notes, 4)? as usize;
        let kind = u32_at(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name == XEN_NOTE_NAME {
            return u32_at(desc, 0);
        }
        notes = notes.get(desc_end.checked_next_multiple_of(4)?.min(notes.len())..)?;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    /// An ELF64 with one `PT_LOAD` of `body` at physical 16 MiB and one
    /// `PT_NOTE` holding `notes`; enough for linux-loader to load it.
    pub(crate) fn elf_with_notes(notes: &[u8], body: &[u8]) -> Vec<u8> {
        let phoff = 64usize;
        let notes_at = phoff + 2 * PHDR_SIZE;
        let body_at = (notes_at + notes.len()).next_multiple_of(16);
        let mut e = vec![0u8; body_at];
        e[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        e[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        e[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        e[0x18..0x20].copy_from_slice(&0x100_0000u64.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        e[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let mut ph = |i: usize, kind: u32, offset: usize, size: usize, paddr: u64| {
            let at = phoff + i * PHDR_SIZE;
            e[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            e[at + 8..at + 16].copy_from_slice(&(offset as u64).to_le_bytes());
            e[at + 16..at + 24].copy_from_slice(&paddr.to_le_bytes());
            e[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
            e[at + 32..at + 40].copy_from_slice(&(size as u64).to_le_bytes());
            e[at + 40..at + 48].copy_from_slice(&(size as u64).to_le_bytes());
        };
        ph(0, 1, body_at, body.len(), 0x100_0000);
        ph(1, PT_NOTE, notes_at, notes.len(), 0);
        e[notes_at..notes_at + notes.len()].copy_from_slice(notes);
        e.extend_from_slice(body);
        e
    }

    /// An ELF64 kernel stand-in whose PVH entry is `entry`.
    pub(crate) fn pvh_elf(entry: u32, body: &[u8]) -> Vec<u8> {
        let mut notes = note(b"GNU\0", 3, &[1, 2, 3, 4, 5]);
        notes.extend(note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, &entry.to_le_bytes()));
        elf_with_notes(&notes, body)
    }

    #[test]
    fn finds_the_entry_after_other_notes() {
        assert_eq!(pvh_entry(&pvh_elf(0x100_1234, b"kernel")), Some(0x100_1234));
    }

    #[test]
    fn no_note_wrong_owner_or_not_elf64_is_none() {
        assert_eq!(pvh_entry(&elf_with_notes(&note(b"GNU\0", 3, &[0; 16]), b"k")), None);
        assert_eq!(pvh_entry(&elf_with_notes(&note(b"Xyz\0", 18, &[0; 4]), b"k")), None);
        let mut elf32 = pvh_elf(1, b"k");
        elf32[4] = 1;
        assert_eq!(pvh_entry(&elf32), None);
        assert_eq!(pvh_entry(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn hostile_headers_never_panic() {
        let good = pvh_elf(0x1000, b"kernel");
        // Every truncation, and every byte of the headers set to 0xff.
        for cut in 0..good.len() {
            let _ = pvh_entry(&good[..cut]);
        }
        for at in 0..good.len().min(64 + 2 * PHDR_SIZE + 64) {
            let mut bad = good.clone();
            bad[at] = 0xff;
            let _ = pvh_entry(&bad);
        }
    }
}
