//! The transmit side (virtio 1.2, 5.1.6.2): each chain on `transmitq1` is
//! one frame, header first, copied out of guest memory into a bounce
//! buffer and written to the backend in one piece. Every chain is returned
//! with used length 0 (the device writes nothing into it), whether the
//! frame was sent, dropped as unusable or refused by the backend.

use virtio_queue::QueueT;
use vm_memory::GuestMemory;

use crate::virtio::chain::{walk_into, Buffer};
use crate::virtio::device::DeviceError;
use crate::virtio::queue::{drain, ActiveQueue};

use super::backend::{NetBackend, FRAME_MAX, VNET_HDR_LEN};
use super::counters::NetCounters;
use super::guest_buffers::{read_all, readable_len};
use super::TRANSMITQ;

/// The transmit queue's state, reused buffers included.
pub(crate) struct Transmitter<M> {
    pub(crate) active: Option<ActiveQueue<M>>,
    chain: Vec<Buffer>,
    frame: Box<[u8]>,
}

impl<M> Transmitter<M> {
    pub(crate) fn new(queue_size: u16) -> Self {
        Self {
            active: None,
            chain: Vec::with_capacity(usize::from(queue_size)),
            frame: vec![0u8; FRAME_MAX].into_boxed_slice(),
        }
    }
}

impl<M: GuestMemory> Transmitter<M> {
    /// Sends every frame the driver made available.
    pub(crate) fn transmit(
        &mut self,
        backend: &mut dyn NetBackend,
        counters: &mut NetCounters,
    ) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut() else {
            log::debug!("virtio-net: transmit notification before activation ignored");
            return Ok(());
        };
        let mem = &*active.mem;
        let max_descriptors = active.queue.size();
        let chain = &mut self.chain;
        let frame = &mut self.frame;
        drain(&mut active.queue, mem, &*active.interrupt, TRANSMITQ, |c| {
            let len = match walk_into(c, max_descriptors, chain) {
                Ok(()) => gather(mem, chain, frame),
                Err(e) => {
                    log::debug!("virtio-net: transmit chain: {e}; dropped");
                    None
                }
            };
            match len {
                Some(len) => match backend.write_frame(&frame[..len]) {
                    Ok(()) => {
                        counters.tx_frames += 1;
                        counters.tx_bytes += (len - VNET_HDR_LEN) as u64;
                    }
                    Err(e) => {
                        counters.tx_dropped += 1;
                        counters.backend_errors += 1;
                        crate::guest_log!(static log::Level::Warn, "virtio-net: the backend refused a frame: {e}; dropped (is the TAP up?)");
                    }
                },
                None => counters.tx_dropped += 1,
            }
            Ok(0)
        })
    }
}

/// Copies a transmit chain's frame into `frame`; its length, or `None` if
/// the chain is unusable (a device-writable buffer, shorter than the
/// header, longer than [`FRAME_MAX`], not readable).
fn gather<M: GuestMemory>(mem: &M, buffers: &[Buffer], frame: &mut [u8]) -> Option<usize> {
    let Some(len) = readable_len(buffers) else {
        log::debug!("virtio-net: transmit chain has device-writable buffers; dropped");
        return None;
    };
    if !(VNET_HDR_LEN..=frame.len()).contains(&len) {
        log::debug!(
            "virtio-net: {len}-byte transmit chain (header {VNET_HDR_LEN}, at most {FRAME_MAX}); dropped"
        );
        return None;
    }
    match read_all(mem, buffers, frame) {
        Ok(n) => Some(n),
        Err(e) => {
            log::debug!("virtio-net: transmit buffer not readable: {e}; dropped");
            None
        }
    }
}
