//! Legacy-mode translation structures (VT-d 4.x, 9.1 root entry, 9.3
//! context entry, 9.8 second-level paging entries) and the walk from a
//! source ID and an input address to a page, with the non-recoverable
//! fault reasons of 7.1.3 (table 7-25 in 4.x, "Unrecoverable fault
//! conditions and reasons") for everything that can go wrong.
//!
//! The walk reads each 64-bit word of an entry once, with one atomic load
//! (an 8-byte paging entry, a 16-byte root or context entry), has a fixed
//! depth (root, context, four paging levels) and never follows a pointer
//! back: a guest's tables cannot make it loop.

use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Permissions};

use crate::registers::ADDRESS_WIDTH;

/// Why a translation failed: the fault reason the unit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultReason {
    /// 1h: the root entry for the bus is not present.
    RootNotPresent = 0x1,
    /// 2h: the context entry for the device and function is not present.
    ContextNotPresent = 0x2,
    /// 3h: the context entry asks for something the unit does not support
    /// (address width, translation type) or its second-level pointer
    /// cannot be read.
    ContextInvalid = 0x3,
    /// 4h: the input address is above the address width.
    AddressBeyondWidth = 0x4,
    /// 5h: a write through a page (or table) without write permission,
    /// not-present entries included.
    NoWrite = 0x5,
    /// 6h: a read through a page (or table) without read permission,
    /// not-present entries included.
    NoRead = 0x6,
    /// 7h: a second-level paging entry points outside memory.
    PagingEntryAccess = 0x7,
    /// 8h: the root table cannot be read (outside memory, or a root table
    /// pointer with an unsupported translation table mode).
    RootTableAccess = 0x8,
    /// 9h: the context table a root entry points to cannot be read.
    ContextTableAccess = 0x9,
    /// Ah: a present root entry has a reserved bit set.
    RootReserved = 0xa,
    /// Bh: a present context entry has a reserved bit set.
    ContextReserved = 0xb,
    /// Ch: a present second-level paging entry has a reserved bit set.
    PagingEntryReserved = 0xc,
}

/// Address bits above the host address width: reserved in every entry.
const ABOVE_WIDTH: u64 = !((1u64 << ADDRESS_WIDTH) - 1);
const PRESENT: u64 = 1;
const ADDRESS: u64 = !0xfff & !ABOVE_WIDTH;

/// Root entry (9.1): P (bit 0), context-table pointer (bits 63:12); the
/// rest and the whole upper half are reserved.
const ROOT_RESERVED_LO: u64 = 0xffe | ABOVE_WIDTH;

/// Context entry (9.3), lower half: P (0), FPD (1), TT (3:2), reserved
/// 11:4, second-level page-table pointer (63:12).
const CONTEXT_FPD: u64 = 1 << 1;
const CONTEXT_RESERVED_LO: u64 = 0xff0 | ABOVE_WIDTH;
/// Upper half: AW (2:0), ignored (6:3), reserved (7), DID (23:8), reserved
/// (63:24).
const CONTEXT_RESERVED_HI: u64 = 1 << 7 | !0xff_ffff;
/// AW encoding of the one supported width, 48-bit 4-level tables.
const AW_48_BIT: u64 = 0b010;

/// Second-level entries (9.8): R (0), W (1), the page size bit (7) in
/// PDPEs and PDEs, SNP (11) in leaves.
const SL_READ: u64 = 1 << 0;
const SL_WRITE: u64 = 1 << 1;
const SL_PAGE_SIZE: u64 = 1 << 7;
const SL_SNOOP: u64 = 1 << 11;

/// A present context entry, as the unit caches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context {
    pub(crate) domain: u16,
    pub(crate) kind: ContextKind,
    /// Fault processing disabled: faults of this source ID are not recorded.
    pub(crate) fpd: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextKind {
    /// TT = 00b: untranslated requests walk the second-level tables at
    /// this address.
    Translate { table: u64 },
    /// TT = 10b: untranslated requests pass through (`iommu=pt`).
    PassThrough,
}

/// A failed walk: the reason and whether the context entry asks for its
/// faults not to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalkFault {
    pub(crate) reason: FaultReason,
    pub(crate) fpd: bool,
}

impl From<FaultReason> for WalkFault {
    fn from(reason: FaultReason) -> Self {
        Self { reason, fpd: false }
    }
}

/// A page the second-level tables map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    /// First input address of the page.
    pub(crate) iova: u64,
    /// Its output (guest-physical) address.
    pub(crate) phys: u64,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub(crate) size: u64,
    pub(crate) permissions: Permissions,
}

/// Reads the `N` 64-bit words of a table entry at `address`, each with
/// one atomic load, as the hardware does: the guest may be writing the
/// entry on another vCPU, and a torn read would see an entry it never
/// wrote. Acquire, so that a next-level table written before the entry
/// that points to it is seen whole. `None` outside guest memory (entries
/// are naturally aligned: table addresses are 4 KiB-aligned).
fn read_entry<const N: usize>(mem: &GuestMemoryMmap, address: u64) -> Option<[u64; N]> {
    let mut raw = [0u64; N];
    for (i, word) in raw.iter_mut().enumerate() {
        let at = GuestAddress(address.checked_add(8 * i as u64)?);
        *word = mem.load::<u64>(at, Ordering::Acquire).ok()?;
    }
    Some(raw)
}

/// The context entry of `source_id` in the legacy root table at `root`.
pub(crate) fn context(mem: &GuestMemoryMmap, root: u64, source_id: u16) -> Result<Context, WalkFault> {
    let bus = u64::from(source_id >> 8);
    let devfn = u64::from(source_id & 0xff);
    let [root_lo, root_hi] = root
        .checked_add(bus * 16)
        .and_then(|a| read_entry::<2>(mem, a))
        .ok_or(FaultReason::RootTableAccess)?;
    if root_lo & PRESENT == 0 {
        return Err(FaultReason::RootNotPresent.into());
    }
    if root_lo & ROOT_RESERVED_LO != 0 || root_hi != 0 {
        return Err(FaultReason::RootReserved.into());
    }
    let [lo, hi] =
        read_entry::<2>(mem, (root_lo & ADDRESS) + devfn * 16).ok_or(FaultReason::ContextTableAccess)?;
    if lo & PRESENT == 0 {
        return Err(FaultReason::ContextNotPresent.into());
    }
    let fpd = lo & CONTEXT_FPD != 0;
    let fault = |reason| WalkFault { reason, fpd };
    if lo & CONTEXT_RESERVED_LO != 0 || hi & CONTEXT_RESERVED_HI != 0 {
        return Err(fault(FaultReason::ContextReserved));
    }
    // 9.3: for pass-through, AW must be the largest width the unit
    // supports; for translation, a width SAGAW reports. Both are 48 bits.
    if hi & 0b111 != AW_48_BIT {
        return Err(fault(FaultReason::ContextInvalid));
    }
    let kind = match (lo >> 2) & 0b11 {
        0b00 => ContextKind::Translate { table: lo & ADDRESS },
        0b10 => ContextKind::PassThrough,
        // 01b needs device-TLB support (ECAP.DT = 0); 11b is reserved.
        _ => return Err(fault(FaultReason::ContextInvalid)),
    };
    Ok(Context { domain: ((hi >> 8) & 0xffff) as u16, kind, fpd })
}

/// The fault an access without `needed` permission gets.
pub(crate) fn permission_fault(access: Permissions) -> FaultReason {
    if access.has_write() {
        FaultReason::NoWrite
    } else {
        FaultReason::NoRead
    }
}

fn permissions(entry: u64) -> Permissions {
    match (entry & SL_READ != 0, entry & SL_WRITE != 0) {
        (true, true) => Permissions::ReadWrite,
        (true, false) => Permissions::Read,
        (false, true) => Permissions::Write,
        (false, false) => Permissions::No,
    }
}

/// Walks the 4-level second-level tables at `table` for `iova`. A
/// not-present entry (R = W = 0) on the way is a permission fault for
/// `access` (7.1.3); permissions are the intersection of every level's
/// (9.8). `snoop_allowed`: ECAP.SC, without which the SNP bit is reserved.
pub(crate) fn walk(
    mem: &GuestMemoryMmap,
    table: u64,
    iova: u64,
    access: Permissions,
    snoop_allowed: bool,
) -> Result<Page, FaultReason> {
    if iova & ABOVE_WIDTH != 0 {
        return Err(FaultReason::AddressBeyondWidth);
    }
    let mut table = table;
    let mut allowed = Permissions::ReadWrite;
    for level in (1..=4u32).rev() {
        let shift = 12 + 9 * (level - 1);
        let index = (iova >> shift) & 0x1ff;
        let [entry] = read_entry::<1>(mem, table + index * 8).ok_or(if level == 4 {
            FaultReason::ContextInvalid
        } else {
            FaultReason::PagingEntryAccess
        })?;
        if entry & (SL_READ | SL_WRITE) == 0 {
            return Err(permission_fault(access));
        }
        let leaf = level == 1 || (level <= 3 && entry & SL_PAGE_SIZE != 0);
        let size = 1u64 << shift;
        // Reserved: address bits above the width everywhere; the page size
        // bit in a PML4E; SNP outside leaves or without snoop control; the
        // low address bits of a large page.
        let mut reserved = ABOVE_WIDTH;
        if level == 4 {
            reserved |= SL_PAGE_SIZE;
        }
        if !leaf || !snoop_allowed {
            reserved |= SL_SNOOP;
        }
        if leaf && level > 1 {
            reserved |= (size - 1) & !0xfff;
        }
        if entry & reserved != 0 {
            return Err(FaultReason::PagingEntryReserved);
        }
        allowed = allowed & permissions(entry);
        if leaf {
            return Ok(Page {
                iova: iova & !(size - 1),
                phys: entry & ADDRESS & !(size - 1),
                size,
                permissions: allowed,
            });
        }
        table = entry & ADDRESS;
    }
    // The loop returns at level 1 at the latest.
    Err(FaultReason::PagingEntryAccess)
}
