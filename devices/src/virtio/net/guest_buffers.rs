//! Moving bytes between a frame and a chain's guest buffers (after IOMMU
//! translation, if any) without allocating.

use vm_memory::{Address, GuestMemory, GuestMemoryError, Permissions};

use crate::virtio::chain::Buffer;

/// Bytes the driver let the device write into `buffers`, or `None` if one
/// of them is device-readable (a receive chain is all device-writable,
/// virtio 1.2, 5.1.6.3).
pub(crate) fn writable_room(buffers: &[Buffer]) -> Option<usize> {
    let mut room = 0usize;
    for b in buffers {
        if !b.write_only {
            return None;
        }
        room = room.saturating_add(b.len as usize);
    }
    Some(room)
}

/// Bytes the driver gave the device to read in `buffers`, or `None` if one
/// of them is device-writable (a transmit chain is all device-readable,
/// virtio 1.2, 5.1.6.2).
pub(crate) fn readable_len(buffers: &[Buffer]) -> Option<usize> {
    let mut len = 0usize;
    for b in buffers {
        if b.write_only {
            return None;
        }
        len = len.saturating_add(b.len as usize);
    }
    Some(len)
}

/// Writes `data` into the buffers of a chain, starting `offset` bytes into
/// them. The caller has checked that they hold `offset + data.len()`
/// bytes; an address that is not writable (outside guest memory, unmapped
/// or read-only through the IOMMU) fails, possibly after earlier bytes
/// were written.
pub(crate) fn write_at<M: GuestMemory>(
    mem: &M,
    buffers: &[Buffer],
    mut offset: usize,
    mut data: &[u8],
) -> Result<(), GuestMemoryError> {
    for b in buffers {
        if data.is_empty() {
            break;
        }
        let len = b.len as usize;
        if offset >= len {
            offset -= len;
            continue;
        }
        let n = (len - offset).min(data.len());
        let addr = b.addr.checked_add(offset as u64).ok_or(GuestMemoryError::InvalidGuestAddress(b.addr))?;
        let mut done = 0;
        for slice in mem.get_slices(addr, n, Permissions::Write)? {
            let slice = slice?;
            let chunk = slice.len().min(n - done);
            slice.copy_from(&data[done..done + chunk]);
            done += chunk;
        }
        data = &data[n..];
        offset = 0;
    }
    if data.is_empty() {
        Ok(())
    } else {
        Err(GuestMemoryError::PartialBuffer { expected: data.len(), completed: 0 })
    }
}
