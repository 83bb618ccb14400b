//! The event loop's side of a virtio-net device: receiving while its TAP
//! is readable, and not watching the TAP while the device cannot take
//! frames (the guest has no receive buffers, the device is not running,
//! a read failed) until the device's ready event says to try again. The
//! TAP is watched level-triggered, so frames left behind by the device's
//! per-call budget wake the loop again; the guest's transmit and receive
//! notifications arrive through the transport's queue events, like every
//! device's. It also ends each transmit hold (the device keeps the guest's
//! transmit notifications off for a moment after sending, and sends what
//! was queued meanwhile when its timer fires).

use std::os::fd::AsRawFd;

use dmavm_devices::virtio::net::{NetHandle, RxOutcome};
use event_manager::{EventOps, Events, MutEventSubscriber};
use vm_memory::GuestMemory;
use vmm_sys_util::epoll::EventSet;

/// Receives, and ends transmit holds, for one virtio-net device.
pub struct NetEvents<M> {
    id: String,
    handle: NetHandle<M>,
    /// The TAP is registered with the event loop.
    watching: bool,
}

impl<M> std::fmt::Debug for NetEvents<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetEvents").field("id", &self.id).field("watching", &self.watching).finish()
    }
}

impl<M: GuestMemory> NetEvents<M> {
    /// The subscriber of the device named `id`.
    pub fn new(id: &str, handle: NetHandle<M>) -> Self {
        Self { id: id.to_owned(), handle, watching: false }
    }

    fn watch(&mut self, ops: &mut EventOps, on: bool) {
        if on == self.watching {
            return;
        }
        let event = Events::new_raw(self.handle.backend_fd(), EventSet::IN);
        let result = if on { ops.add(event) } else { ops.remove(event) };
        match result {
            Ok(()) => self.watching = on,
            Err(e) => {
                log::error!("{}: cannot {} the TAP: {e:?}", self.id, if on { "watch" } else { "unwatch" })
            }
        }
    }

    fn receive(&mut self, ops: &mut EventOps) {
        let keep = match self.handle.receive() {
            RxOutcome::Drained | RxOutcome::Budget => true,
            RxOutcome::NoBuffers | RxOutcome::BackendFailed | RxOutcome::Stopped => false,
        };
        self.watch(ops, keep);
    }
}

impl<M: GuestMemory + Send> MutEventSubscriber for NetEvents<M> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.handle.hold_fd() {
            self.handle.hold_ended();
            return;
        }
        if events.fd() == self.handle.ready_event().as_raw_fd() {
            // WouldBlock: already cleared, nothing lost.
            let _ = self.handle.ready_event().read();
        }
        // Ready event or TAP readable (or in error: the read reports it).
        self.receive(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.handle.ready_event(), EventSet::IN)) {
            log::error!("{}: cannot watch the device's ready event: {e:?}", self.id);
        }
        if let Err(e) = ops.add(Events::new_raw(self.handle.hold_fd(), EventSet::IN)) {
            log::error!("{}: cannot watch the transmit hold timer: {e:?}", self.id);
        }
        // Not the TAP yet: the device is not running before the guest's
        // driver starts it, which fires the ready event.
    }
}
