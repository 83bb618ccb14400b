//! Invalidation requests, from the registers (CCMD, IOTLB) or from the
//! invalidation queue (VT-d 4.x, 6.5.2: 128-bit descriptors in legacy
//! mode), and the error information of a bad queue (IQERCD.IQEI).

use crate::registers::MAX_ADDRESS_MASK;

/// Which context-cache entries to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextScope {
    Global,
    Domain(u16),
    /// The source IDs equal to `source_id` outside `ignored` (the function
    /// mask, FM: 6.5.2.1).
    Device {
        source_id: u16,
        ignored: u16,
    },
}

/// Which IOTLB entries to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IotlbScope {
    Global,
    Domain(u16),
    /// `[start, start + len)` of `domain`.
    Pages {
        domain: u16,
        start: u64,
        len: u64,
    },
}

/// One decoded invalidation queue descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Descriptor {
    Context(ContextScope),
    Iotlb(IotlbScope),
    /// Invalidation wait (6.5.2.8): write `data` at `address` (SW), raise
    /// the completion interrupt (IF).
    Wait {
        status: Option<(u64, u32)>,
        interrupt: bool,
    },
}

/// IQERCD.IQEI: why the queue stopped (11.4.7.6, Invalidation Queue Error
/// Record Register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The tail points past the end of the queue.
    TailBeyondSize = 1,
    /// A descriptor could not be read from memory.
    Fetch = 2,
    /// A descriptor type the unit does not support.
    InvalidType = 3,
    /// A reserved field of a descriptor is set (reserved granularities
    /// included).
    Reserved = 4,
}

const TYPE_CONTEXT: u64 = 0x1;
const TYPE_IOTLB: u64 = 0x2;
const TYPE_WAIT: u64 = 0x5;

/// Bits 3:0 and 11:9 form the type.
fn descriptor_type(lo: u64) -> u64 {
    (lo & 0xf) | ((lo >> 9) & 0x7) << 4
}

/// The function mask (FM, 2 bits) as the source-ID bits it ignores.
pub(crate) fn function_mask(fm: u64) -> u16 {
    match fm & 0b11 {
        0b00 => 0,
        0b01 => 0b100,
        0b10 => 0b110,
        _ => 0b111,
    }
}

/// Context-cache invalidation by granularity (01 global, 10 domain, 11
/// device); `None` for the reserved 00.
pub(crate) fn context_scope(granularity: u64, domain: u16, source_id: u16, fm: u64) -> Option<ContextScope> {
    match granularity & 0b11 {
        0b01 => Some(ContextScope::Global),
        0b10 => Some(ContextScope::Domain(domain)),
        0b11 => Some(ContextScope::Device { source_id, ignored: function_mask(fm) }),
        _ => None,
    }
}

/// IOTLB invalidation by granularity (01 global, 10 domain, 11 pages);
/// `None` for the reserved 00. An address mask above MAMV is served as a
/// domain-selective invalidation (it covers more than the unit caches
/// per page range anyway; dropping more is always correct).
pub(crate) fn iotlb_scope(granularity: u64, domain: u16, address: u64, mask: u64) -> Option<IotlbScope> {
    match granularity & 0b11 {
        0b01 => Some(IotlbScope::Global),
        0b10 => Some(IotlbScope::Domain(domain)),
        0b11 if mask > MAX_ADDRESS_MASK => Some(IotlbScope::Domain(domain)),
        0b11 => {
            let len = 0x1000u64 << mask;
            Some(IotlbScope::Pages { domain, start: address & !(len - 1), len })
        }
        _ => None,
    }
}

/// Decodes one 128-bit descriptor.
pub(crate) fn decode([lo, hi]: [u64; 2]) -> Result<Descriptor, QueueError> {
    match descriptor_type(lo) {
        TYPE_CONTEXT => {
            // G (5:4), DID (31:16), SID (47:32), FM (49:48).
            if lo & (0xffc0 | !0x3_ffff_ffff_ffff) != 0 || hi != 0 {
                return Err(QueueError::Reserved);
            }
            context_scope(lo >> 4, (lo >> 16) as u16, (lo >> 32) as u16, lo >> 48)
                .map(Descriptor::Context)
                .ok_or(QueueError::Reserved)
        }
        TYPE_IOTLB => {
            // G (5:4), DW (6), DR (7), DID (31:16); AM (5:0), IH (6),
            // ADDR (63:12).
            if lo & (0xff00 | !0xffff_ffff) != 0 || hi & 0xf80 != 0 {
                return Err(QueueError::Reserved);
            }
            iotlb_scope(lo >> 4, (lo >> 16) as u16, hi & !0xfff, hi & 0x3f)
                .map(Descriptor::Iotlb)
                .ok_or(QueueError::Reserved)
        }
        TYPE_WAIT => {
            // IF (4), SW (5), FN (6), PD (7), status data (63:32); status
            // address (63:2).
            if lo & 0xffff_ff00 != 0 || hi & 0b11 != 0 {
                return Err(QueueError::Reserved);
            }
            let status = (lo & 1 << 5 != 0).then_some((hi, (lo >> 32) as u32));
            Ok(Descriptor::Wait { status, interrupt: lo & 1 << 4 != 0 })
        }
        // Device-TLB, interrupt entry cache, PASID-based: not supported.
        _ => Err(QueueError::InvalidType),
    }
}
