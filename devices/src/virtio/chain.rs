//! Turning a descriptor chain into the list of guest buffers it describes,
//! with the structural checks that virtio-queue's iterator only signals by
//! stopping early.
//!
//! `virtio_queue::DescriptorChain` ends iteration silently when the chain
//! loops (its time-to-live runs out), when a `next` index is outside the
//! table, when a descriptor cannot be read, when an indirect table is
//! malformed or nested inside another one, and when the chain would exceed
//! 2^32 bytes. In every such case the last descriptor it yielded still has
//! `VIRTQ_DESC_F_NEXT` set (or it yielded nothing), which is how [`walk`]
//! tells a complete chain from a truncated one. It also enforces the limit
//! the iterator does not: a chain, indirect tables included, is never longer
//! than the limit its device gives, the queue size (virtio 1.2, 2.7.5.3.1)
//! unless the device promised more (virtio-blk's `seg_max`).
//!
//! Shared by every queue-driven device (block, net, rng, console), and public for
//! the device models outside this crate (the virtio-iommu in `dmavm-iommu`).

use std::borrow::Cow;
use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::bitmap::BS;
use vm_memory::{Address, GuestAddress, GuestMemory, GuestMemoryError, Permissions, VolatileSlice};

/// One descriptor's buffer, as the driver described it (not yet checked
/// against guest memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest address (an IOVA when the device is behind the IOMMU).
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// `VIRTQ_DESC_F_WRITE`: the device writes this buffer.
    pub write_only: bool,
}

/// Why a chain is structurally unusable. None of these leave a trustworthy
/// place to report a status, so the device completes the chain with used
/// length 0 and touches none of its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain yielded no descriptor at all (an empty or invalid indirect
    /// table at its head, an unreadable head descriptor).
    #[error("descriptor chain has no descriptors")]
    Empty,
    /// The chain stopped before a descriptor without `VIRTQ_DESC_F_NEXT`: a
    /// loop, a `next` index outside the table, an unreadable descriptor, a
    /// malformed or nested indirect table, or more than 2^32 bytes in total.
    #[error("descriptor chain is truncated (loop, bad next index, bad indirect table or length overflow)")]
    Truncated,
    /// More descriptors than the queue size.
    #[error("descriptor chain is longer than the queue size {0}")]
    TooLong(u16),
}

/// Collects the buffers of `chain`, at most `max_descriptors` of them (the
/// queue size).
pub fn walk<T>(chain: DescriptorChain<T>, max_descriptors: u16) -> Result<Vec<Buffer>, ChainError>
where
    T: Deref,
    T::Target: GuestMemory,
{
    let mut buffers = Vec::new();
    walk_into(chain, max_descriptors, &mut buffers)?;
    Ok(buffers)
}

/// Like [`walk`], into `buffers` (cleared first), so that a device serving
/// a chain per packet reuses one list instead of allocating per chain.
/// On error `buffers` holds what was walked so far, which must not be used.
pub fn walk_into<T>(
    chain: DescriptorChain<T>,
    max_descriptors: u16,
    buffers: &mut Vec<Buffer>,
) -> Result<(), ChainError>
where
    T: Deref,
    T::Target: GuestMemory,
{
    buffers.clear();
    let mut complete = false;
    for desc in chain {
        if buffers.len() >= usize::from(max_descriptors) {
            return Err(ChainError::TooLong(max_descriptors));
        }
        buffers.push(Buffer { addr: desc.addr(), len: desc.len(), write_only: desc.is_write_only() });
        complete = !desc.has_next();
    }
    if buffers.is_empty() {
        Err(ChainError::Empty)
    } else if !complete {
        Err(ChainError::Truncated)
    } else {
        Ok(())
    }
}

/// `buffers` without their first `skip` bytes: the buffers those bytes
/// cover dropped, the first one left shortened by the rest. For a device
/// that consumes a long chain over several passes. `None` if the shortened
/// buffer's address would pass the end of the address space.
pub fn skip_bytes(buffers: &[Buffer], skip: usize) -> Option<Cow<'_, [Buffer]>> {
    if skip == 0 {
        return Some(Cow::Borrowed(buffers));
    }
    let mut left = skip as u64;
    let mut rest = Vec::with_capacity(buffers.len());
    let mut after = buffers.iter();
    for b in after.by_ref() {
        let len = u64::from(b.len);
        if left >= len {
            left -= len;
            continue;
        }
        // `left` < `b.len`, so it fits in a u32.
        rest.push(Buffer { addr: b.addr.checked_add(left)?, len: b.len - left as u32, ..*b });
        break;
    }
    rest.extend(after);
    Some(Cow::Owned(rest))
}

/// Host slices (after IOMMU translation, if any) for the first `limit`
/// bytes of `buffers` taken in order, checked for `access`; all or nothing,
/// so a caller can refuse a chain before moving a single byte.
pub fn slices<'m, M: GuestMemory>(
    mem: &'m M,
    buffers: &[Buffer],
    limit: usize,
    access: Permissions,
) -> Result<Vec<VolatileSlice<'m, BS<'m, M::Bitmap>>>, GuestMemoryError> {
    let mut left = limit;
    let mut out = Vec::new();
    for b in buffers {
        let len = (b.len as usize).min(left);
        if len == 0 {
            continue;
        }
        for slice in mem.get_slices(b.addr, len, access)? {
            out.push(slice?);
        }
        left -= len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(addr: u64, len: u32) -> Buffer {
        Buffer { addr: GuestAddress(addr), len, write_only: false }
    }

    #[test]
    fn skip_bytes_drops_covered_buffers_and_shortens_the_next() {
        let bufs = [buf(0x1000, 16), buf(0x2000, 0), buf(0x3000, 32)];
        assert!(matches!(skip_bytes(&bufs, 0), Some(Cow::Borrowed(b)) if b == bufs));
        assert_eq!(*skip_bytes(&bufs, 10).unwrap(), [buf(0x100a, 6), buf(0x2000, 0), buf(0x3000, 32)]);
        // Exactly a buffer's end: the empty buffer after it goes too.
        assert_eq!(*skip_bytes(&bufs, 16).unwrap(), [buf(0x3000, 32)]);
        assert_eq!(*skip_bytes(&bufs, 47).unwrap(), [buf(0x301f, 1)]);
        assert!(skip_bytes(&bufs, 48).unwrap().is_empty());
        assert!(skip_bytes(&bufs, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn skip_bytes_refuses_an_address_past_the_end() {
        let bufs = [buf(u64::MAX - 1, 8)];
        assert_eq!(*skip_bytes(&bufs, 1).unwrap(), [buf(u64::MAX, 7)]);
        assert!(skip_bytes(&bufs, 2).is_none());
    }
}
