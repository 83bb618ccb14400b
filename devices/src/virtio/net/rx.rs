//! The receive side (virtio 1.2, 5.1.6.3 and 5.1.6.4): frames from the
//! backend into the buffers the driver posted on `receiveq1`.
//!
//! One frame is read at a time into a bounce buffer and copied into one
//! chain, or with `VIRTIO_NET_F_MRG_RXBUF` into as many chains as it needs,
//! the first one's header saying how many (`num_buffers`). Before reading
//! the backend the device checks that the driver posted a buffer; if a
//! frame needs more chains than are posted, the chains taken are put back
//! and the frame waits in the bounce buffer until the driver posts more
//! (it is dropped if a whole queue of chains cannot hold it). Either way
//! the device stops reading the backend and asks the driver to notify it
//! on its next post ([`wait_for_more`]); the event loop stops watching
//! the backend until then ([`RxOutcome::NoBuffers`]).

use std::sync::atomic::Ordering;

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::GuestMemory;

use crate::virtio::chain::{walk_into, Buffer};
use crate::virtio::device::DeviceError;
use crate::virtio::queue::{has_available, notify_used, pop, protocol, ActiveQueue};

use super::backend::{NetBackend, FRAME_MAX, NUM_BUFFERS_OFFSET, VNET_HDR_LEN};
use super::counters::NetCounters;
use super::guest_buffers::{writable_room, write_at};
use super::RECEIVEQ;

/// Most frames one call moves, so a backend that never runs dry cannot
/// keep the event loop from its other work; the loop calls again while
/// the backend is readable.
pub(crate) const RX_BUDGET: usize = 64;

/// How a receive pass ended: what the event loop does with the backend's
/// readiness next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    /// The backend has no frame waiting: keep watching it.
    Drained,
    /// The budget ran out with the backend maybe still readable: keep
    /// watching it (level-triggered, it fires again).
    Budget,
    /// The driver has no (or too few) receive buffers: stop watching the
    /// backend until the device's ready event fires.
    NoBuffers,
    /// Reading the backend failed (logged): stop watching it until the
    /// device's ready event fires.
    BackendFailed,
    /// The device is not running (before `DRIVER_OK`, after a reset or a
    /// protocol violation): stop watching the backend until the device's
    /// ready event fires.
    Stopped,
}

/// What became of one frame.
enum Placed {
    /// In the used ring.
    Delivered,
    /// Dropped: the chains it was offered were unusable or too small (they
    /// are returned with used length 0).
    Dropped,
    /// Not enough chains posted; the ones taken were put back.
    NoRoom,
}

/// The receive queue's state, reused buffers included.
pub(crate) struct Receiver<M> {
    pub(crate) active: Option<ActiveQueue<M>>,
    pub(crate) mergeable: bool,
    /// A protocol violation found while receiving; nothing is received
    /// until the device is reset.
    pub(crate) broken: Option<String>,
    /// `broken` was returned from a notification already.
    pub(crate) reported: bool,
    /// The frame being delivered, `pending` bytes of it.
    frame: Box<[u8]>,
    pending: usize,
    /// The buffers of the chain being filled, and of the frame's first
    /// chain (whose header gets `num_buffers` last).
    chain: Vec<Buffer>,
    first: Vec<Buffer>,
    /// `(head, used length)` of the chains taken for the frame.
    used: Vec<(u16, u32)>,
}

impl<M> Receiver<M> {
    pub(crate) fn new(queue_size: u16) -> Self {
        Self {
            active: None,
            mergeable: false,
            broken: None,
            reported: false,
            frame: vec![0u8; FRAME_MAX].into_boxed_slice(),
            pending: 0,
            chain: Vec::with_capacity(usize::from(queue_size)),
            first: Vec::with_capacity(usize::from(queue_size)),
            used: Vec::with_capacity(usize::from(queue_size)),
        }
    }

    /// Back to the state before activation; a waiting frame is dropped.
    pub(crate) fn clear(&mut self) {
        self.active = None;
        self.broken = None;
        self.reported = false;
        self.pending = 0;
    }
}

impl<M: GuestMemory> Receiver<M> {
    /// Moves frames from `backend` into the driver's receive buffers until
    /// the backend runs dry, the driver runs out of buffers or the budget
    /// is spent; interrupts the driver as its notification suppression
    /// asks.
    pub(crate) fn receive(&mut self, backend: &mut dyn NetBackend, counters: &mut NetCounters) -> RxOutcome {
        if self.broken.is_some() || self.active.is_none() {
            return RxOutcome::Stopped;
        }
        let mut delivered_any = false;
        let outcome = match self.pass(backend, counters, &mut delivered_any) {
            Ok(outcome) => outcome,
            Err(e) => {
                crate::guest_log!(static log::Level::Error, "virtio-net: {e}; receiving stopped until the device is reset");
                self.broken = Some(e.to_string());
                RxOutcome::Stopped
            }
        };
        if delivered_any {
            if let Some(active) = self.active.as_mut() {
                if let Err(e) = notify_used(&mut active.queue, &*active.mem, &*active.interrupt, RECEIVEQ) {
                    crate::guest_log!(static log::Level::Warn, "virtio-net: receive interrupt: {e}");
                }
            }
        }
        if outcome == RxOutcome::NoBuffers {
            counters.rx_stalls += 1;
        }
        outcome
    }

    fn pass(
        &mut self,
        backend: &mut dyn NetBackend,
        counters: &mut NetCounters,
        delivered_any: &mut bool,
    ) -> Result<RxOutcome, DeviceError> {
        for _ in 0..RX_BUDGET {
            let Some(active) = self.active.as_mut() else { return Ok(RxOutcome::Stopped) };
            if self.pending == 0 {
                if !has_available(&active.queue, &*active.mem)?
                    && !wait_for_more(&mut active.queue, &*active.mem)?
                {
                    return Ok(RxOutcome::NoBuffers);
                }
                match backend.read_frame(&mut self.frame) {
                    Ok(n) if n < VNET_HDR_LEN => {
                        log::debug!(
                            "virtio-net: backend gave a {n}-byte frame, shorter than its header; dropped"
                        );
                        counters.rx_dropped += 1;
                        continue;
                    }
                    Ok(n) => self.pending = n.min(self.frame.len()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(RxOutcome::Drained),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        counters.backend_errors += 1;
                        crate::guest_log!(static log::Level::Warn, "virtio-net: reading the backend failed: {e}; frames wait until the guest posts receive buffers again");
                        return Ok(RxOutcome::BackendFailed);
                    }
                }
            }
            match self.place()? {
                Placed::Delivered => {
                    counters.rx_frames += 1;
                    counters.rx_bytes += (self.pending - VNET_HDR_LEN) as u64;
                    self.pending = 0;
                    *delivered_any = true;
                }
                Placed::Dropped => {
                    counters.rx_dropped += 1;
                    self.pending = 0;
                    *delivered_any = true;
                }
                Placed::NoRoom => {
                    let Some(active) = self.active.as_mut() else { return Ok(RxOutcome::Stopped) };
                    if !wait_for_more(&mut active.queue, &*active.mem)? {
                        return Ok(RxOutcome::NoBuffers);
                    }
                }
            }
        }
        Ok(RxOutcome::Budget)
    }

    /// Offers the pending frame to the chains the driver posted.
    fn place(&mut self) -> Result<Placed, DeviceError> {
        let Some(active) = self.active.as_mut() else { return Ok(Placed::NoRoom) };
        let mem = &*active.mem;
        let queue = &mut active.queue;
        let frame = &self.frame[..self.pending];
        let max_descriptors = queue.size();
        self.used.clear();
        let mut offset = 0;
        let mut usable = true;
        while offset < frame.len() && usable {
            if !self.mergeable && !self.used.is_empty() {
                log::debug!(
                    "virtio-net: {}-byte frame does not fit the receive buffer; dropped",
                    frame.len()
                );
                usable = false;
                break;
            }
            let Some(chain) = pop(queue, mem)? else {
                if self.used.len() >= usize::from(queue.size()) {
                    // A whole queue of chains cannot hold it: it never will.
                    log::debug!(
                        "virtio-net: {}-byte frame does not fit a whole receive queue; dropped",
                        frame.len()
                    );
                    usable = false;
                    break;
                }
                for _ in 0..self.used.len() {
                    queue.go_to_previous_position();
                }
                return Ok(Placed::NoRoom);
            };
            let head = chain.head_index();
            let room = match walk_into(chain, max_descriptors, &mut self.chain) {
                Ok(()) => writable_room(&self.chain),
                Err(e) => {
                    log::debug!("virtio-net: receive chain: {e}");
                    None
                }
            };
            // The first chain holds at least the header; the others at
            // least a byte, so that every chain taken moves the frame on.
            let least = if self.used.is_empty() { VNET_HDR_LEN } else { 1 };
            let room = match room {
                Some(room) if room >= least => room,
                _ => {
                    log::debug!(
                        "virtio-net: receive chain unusable (device-readable, too small or malformed)"
                    );
                    self.used.push((head, 0));
                    usable = false;
                    break;
                }
            };
            let n = room.min(frame.len() - offset);
            if let Err(e) = write_at(mem, &self.chain, 0, &frame[offset..offset + n]) {
                log::debug!("virtio-net: receive buffer not writable: {e}");
                self.used.push((head, 0));
                usable = false;
                break;
            }
            if self.used.is_empty() {
                self.first.clone_from(&self.chain);
            }
            // At most the frame's length, which fits in u32.
            self.used.push((head, n as u32));
            offset += n;
        }
        if usable {
            // With VERSION_1 the field is always there; without mergeable
            // buffers it is 1 (5.1.6.4).
            let count = self.used.len() as u16;
            if let Err(e) = write_at(mem, &self.first, NUM_BUFFERS_OFFSET, &count.to_le_bytes()) {
                log::debug!("virtio-net: receive header not writable: {e}");
                usable = false;
            }
        }
        for &(head, len) in &self.used {
            let len = if usable { len } else { 0 };
            queue.add_used(mem, head, len).map_err(|e| protocol("writing the used ring", e))?;
        }
        Ok(if usable { Placed::Delivered } else { Placed::Dropped })
    }
}

/// Asks the driver to notify the device when it posts its next receive
/// buffer, and returns whether it posted one since the last check (then
/// there is no need to wait). With `VIRTIO_RING_F_EVENT_IDX` that means
/// `avail_event` = the available index the driver has reached, not the
/// device's position (which is behind it when chains were put back):
/// virtio-queue writes its position, so the position is moved there for
/// the write and back.
pub(crate) fn wait_for_more<M: GuestMemory>(
    queue: &mut virtio_queue::Queue,
    mem: &M,
) -> Result<bool, DeviceError> {
    let resume = queue.next_avail();
    let end =
        queue.avail_idx(mem, Ordering::Acquire).map_err(|e| protocol("reading the available index", e))?;
    queue.set_next_avail(end.0);
    let more = queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e));
    queue.set_next_avail(resume);
    more
}
