//! The transmit side (virtio 1.2, 5.1.6.2): each chain on `transmitq1` is
//! one frame, header first, handed to the backend where it lies in guest
//! memory (after IOMMU translation, if any), so that it is copied once,
//! by the backend's kernel, and never into a bounce buffer. Every chain is
//! returned with used length 0 (the device writes nothing into it), whether
//! the frame was sent, dropped as unusable or refused by the backend.

use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestMemory, Permissions};

use crate::virtio::chain::{walk_into, Buffer};
use crate::virtio::device::DeviceError;
use crate::virtio::queue::{drain_holding, resume_notifications, ActiveQueue};

use super::backend::{GuestFrame, NetBackend, FRAME_MAX, VNET_HDR_LEN};
use super::counters::NetCounters;
use super::guest_buffers::readable_len;
use super::TRANSMITQ;

/// The most pieces one frame may have: Linux's `IOV_MAX`, the most one
/// `writev(2)` takes. A frame is at most [`FRAME_MAX`] bytes in at most a
/// queue's worth of buffers, each split only where guest memory regions or
/// IOMMU mappings (4 KiB at least) end, so a driver's frame stays far
/// below; a chain beyond it is dropped.
const MAX_PIECES: usize = 1024;

/// The pieces of the frame being sent; empty between frames.
struct Pieces(Vec<libc::iovec>);

// SAFETY: the pointers in `Pieces` are only used while the frame they
// describe is sent, on the thread that filled them, and cleared before the
// next frame; between frames the vector holds none.
unsafe impl Send for Pieces {}

/// The transmit queue's state, reused buffers included.
pub(crate) struct Transmitter<M> {
    pub(crate) active: Option<ActiveQueue<M>>,
    chain: Vec<Buffer>,
    pieces: Pieces,
}

impl<M> Transmitter<M> {
    pub(crate) fn new(queue_size: u16) -> Self {
        Self {
            active: None,
            chain: Vec::with_capacity(usize::from(queue_size)),
            pieces: Pieces(Vec::with_capacity(usize::from(queue_size))),
        }
    }
}

impl<M: GuestMemory> Transmitter<M> {
    /// Sends every frame the driver made available. A drain that sent at
    /// least `hold_from` frames leaves the queue's notifications off and
    /// the call returns `true`: the caller calls again when its hold ends
    /// (see `tx_hold.rs`). Otherwise notifications are back on when it
    /// returns `false` (`usize::MAX`: never hold).
    pub(crate) fn transmit(
        &mut self,
        backend: &mut dyn NetBackend,
        counters: &mut NetCounters,
        hold_from: usize,
    ) -> Result<bool, DeviceError> {
        let Some(active) = self.active.as_mut() else {
            log::debug!("virtio-net: transmit before activation ignored");
            return Ok(false);
        };
        let mem = &*active.mem;
        let max_descriptors = active.queue.size();
        loop {
            let sent = drain_holding(&mut active.queue, mem, &*active.interrupt, TRANSMITQ, |c| {
                send(c, mem, max_descriptors, &mut self.chain, &mut self.pieces.0, backend, counters);
                Ok(0)
            })?;
            if sent > 0 && sent >= hold_from {
                return Ok(true);
            }
            if !resume_notifications(&mut active.queue, mem)? {
                return Ok(false);
            }
        }
    }
}

/// Sends the frame of `chain`, or drops it (counted) if the chain is
/// unusable or the backend refuses it.
fn send<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    max_descriptors: u16,
    buffers: &mut Vec<Buffer>,
    pieces: &mut Vec<libc::iovec>,
    backend: &mut dyn NetBackend,
    counters: &mut NetCounters,
) {
    let usable = match walk_into(chain, max_descriptors, buffers) {
        Ok(()) => locate(mem, buffers, pieces),
        Err(e) => {
            log::debug!("virtio-net: transmit chain: {e}; dropped");
            false
        }
    };
    if usable {
        // SAFETY: `locate` filled `pieces` from slices of `mem`, which the
        // queue holds mapped for the whole drain.
        let frame = unsafe { GuestFrame::new(pieces) };
        match backend.write_frame(&frame) {
            Ok(()) => {
                counters.tx_frames += 1;
                // `locate` checked the chain holds a header; the pieces are
                // what guest memory made of it.
                counters.tx_bytes += frame.len().saturating_sub(VNET_HDR_LEN) as u64;
            }
            Err(e) => {
                counters.tx_dropped += 1;
                counters.backend_errors += 1;
                crate::guest_log!(static log::Level::Warn, "virtio-net: the backend refused a frame: {e}; dropped (is the TAP up?)");
            }
        }
    } else {
        counters.tx_dropped += 1;
    }
    // Empty between frames: `Pieces` holds no pointer outside one.
    pieces.clear();
}

/// Fills `pieces` with where a transmit chain's frame lies in host memory;
/// `false` if the chain is unusable (a device-writable buffer, shorter than
/// the header, longer than [`FRAME_MAX`], in more than [`MAX_PIECES`]
/// pieces, not readable).
fn locate<M: GuestMemory>(mem: &M, buffers: &[Buffer], pieces: &mut Vec<libc::iovec>) -> bool {
    let Some(len) = readable_len(buffers) else {
        log::debug!("virtio-net: transmit chain has device-writable buffers; dropped");
        return false;
    };
    if !(VNET_HDR_LEN..=FRAME_MAX).contains(&len) {
        log::debug!(
            "virtio-net: {len}-byte transmit chain (header {VNET_HDR_LEN}, at most {FRAME_MAX}); dropped"
        );
        return false;
    }
    for b in buffers.iter().filter(|b| b.len > 0) {
        let slices = match mem.get_slices(b.addr, b.len as usize, Permissions::Read) {
            Ok(slices) => slices,
            Err(e) => {
                log::debug!("virtio-net: transmit buffer not readable: {e}; dropped");
                return false;
            }
        };
        for slice in slices {
            let slice = match slice {
                Ok(slice) => slice,
                Err(e) => {
                    log::debug!("virtio-net: transmit buffer not readable: {e}; dropped");
                    return false;
                }
            };
            if pieces.len() == MAX_PIECES {
                log::debug!("virtio-net: transmit chain in more than {MAX_PIECES} pieces; dropped");
                return false;
            }
            pieces.push(libc::iovec {
                iov_base: slice.ptr_guard().as_ptr().cast_mut().cast(),
                iov_len: slice.len(),
            });
        }
    }
    true
}
