//! virtio-net (virtio 1.2, 5.1) on a host backend (a TAP interface in
//! dmavm): one receive queue (`receiveq1`, index 0) and one transmit queue
//! (`transmitq1`, index 1) of [`NET_QUEUE_SIZE`] entries each, generic over
//! the guest memory it reaches the rings and buffers through (direct, or
//! translated by the virtual IOMMU).
//!
//! # Features
//!
//! `VIRTIO_F_VERSION_1`, `VIRTIO_RING_F_INDIRECT_DESC`,
//! `VIRTIO_RING_F_EVENT_IDX`, `VIRTIO_NET_F_MAC`, `VIRTIO_NET_F_STATUS`,
//! `VIRTIO_NET_F_MRG_RXBUF`, `VIRTIO_NET_F_CSUM`, `VIRTIO_NET_F_GUEST_CSUM`,
//! `VIRTIO_NET_F_HOST_TSO4/6` and `VIRTIO_NET_F_GUEST_TSO4/6` (the header
//! passes through to the TAP, which is told the guest's offloads at
//! activation with `TUNSETOFFLOAD`; see `config.rs`).
//! `VIRTIO_F_ACCESS_PLATFORM` is the transport's to offer, from its
//! [`DmaAccess`](crate::virtio::DmaAccess).
//!
//! # Driving it
//!
//! The transport owns the device, so the VMM keeps a [`NetHandle`] from
//! [`Net::handle`] for its event loop: while [`NetHandle::backend_fd`] is
//! readable it calls [`NetHandle::receive`], and stops watching the backend
//! when that says to ([`RxOutcome`]); [`NetHandle::ready_event`] fires when
//! it should call [`NetHandle::receive`] again and resume watching: at
//! activation, when the driver notifies `receiveq1` (it posted buffers),
//! and on a transmit notification (or the end of a transmit hold) after a
//! failed backend read. Transmit
//! happens on the driver's notification of `transmitq1` and, while the
//! device holds that queue's notifications off after sending
//! (`tx_hold.rs`), whenever [`NetHandle::hold_fd`] is readable: the event
//! loop then calls [`NetHandle::hold_ended`]. Nothing blocks:
//! the backend is non-blocking and a guest without receive buffers only
//! makes the device stop reading (counted in [`NetCounters::rx_stalls`]).
//!
//! # Hostile chains
//!
//! As for the block device: a structurally broken chain (loop, bad `next`,
//! bad indirect table, longer than the queue, over 2^32 bytes), a receive
//! chain with a device-readable buffer or too small for the header, a
//! transmit chain with a device-writable buffer, shorter than the header or
//! longer than [`FRAME_MAX`], and buffers not accessible with the needed
//! permission (outside guest memory, unmapped or read-only through the
//! IOMMU) drop the frame (counted) and return the chain with used length
//! 0; a receive frame that had taken other chains returns them with used
//! length 0 too. Nothing outside the chain's buffers is written. A head
//! index outside the queue, an available index more than a queue size
//! ahead, or rings that are not accessible are protocol violations: found
//! during a notification they fail [`VirtioDevice::process_queue`] (the
//! transport sets `DEVICE_NEEDS_RESET`); found while receiving or at the
//! end of a transmit hold, that side stops and the violation is reported
//! at the next notification.
//!
//! # The backend failing
//!
//! A frame the backend refuses (a TAP that is down, gone or full) is
//! dropped and counted, with a rate-limited warning; a failed read makes
//! the event loop stop watching the backend until the guest next notifies.
//! Neither stops the VM.

mod backend;
mod config;
mod counters;
mod guest_buffers;
mod rx;
mod tap;
mod tx;
mod tx_hold;

#[cfg(test)]
mod tests;

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use vm_memory::GuestMemory;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::device::{Activation, DeviceError, VirtioDevice};
use crate::virtio::queue::{self, prepare_queue, ActiveQueue};

pub use backend::{GuestFrame, NetBackend, Offloads, FRAME_MAX, VNET_HDR_LEN};
pub use counters::NetCounters;
pub use rx::RxOutcome;
pub use tap::{Tap, TapError, TAP_NAME_MAX};
pub use tx_hold::TX_HOLD;

use config::ConfigSpace;
use rx::Receiver;
use tx::Transmitter;
use tx_hold::TxHold;

/// Size of each of the two queues.
pub const NET_QUEUE_SIZE: u16 = 256;

/// Index of `receiveq1`.
const RECEIVEQ: u16 = 0;
/// Index of `transmitq1`.
const TRANSMITQ: u16 = 1;

/// Why a [`Net`] device cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The ready eventfd could not be created.
    #[error("cannot create the virtio-net ready eventfd")]
    EventFd(#[source] std::io::Error),
    /// The transmit hold's timer could not be created.
    #[error("cannot create the virtio-net transmit hold timer")]
    Timer(#[source] std::io::Error),
}

/// What the device and its handles share.
struct Core<M> {
    backend: Box<dyn NetBackend>,
    rx: Receiver<M>,
    tx: Transmitter<M>,
    counters: NetCounters,
    /// The last receive pass ended with a failed backend read.
    rx_failed: bool,
    tx_hold: TxHold,
    /// Notifications of `transmitq1` are off until the hold ends.
    tx_held: bool,
    /// The last hold, from the notification that started it to the check
    /// that found nothing, gathered frames the guest queued during it.
    tx_hold_paid: bool,
    /// The hold going on has gathered frames.
    tx_hold_gathered: bool,
    /// A protocol violation found at the end of a hold, for the next
    /// notification to report.
    tx_broken: Option<String>,
}

impl<M: GuestMemory> Core<M> {
    /// Sends what the driver queued, at a notification or at the end of a
    /// hold, and holds notifications off if that is likely to pay: the
    /// drain sent several frames, or the last hold found some. A guest
    /// whose frames come one per notification, each after a long wait
    /// (behind the IOMMU, every frame waits for its MAP request), gains
    /// nothing from a hold and would pay a timer and a wake-up per frame.
    fn transmit(&mut self, at_hold_end: bool) -> Result<(), DeviceError> {
        let Core { backend, tx, counters, tx_hold, tx_held, tx_hold_paid, tx_hold_gathered, .. } = self;
        let hold_from = if at_hold_end || *tx_hold_paid { 1 } else { 2 };
        *tx_held = tx.transmit(backend.as_mut(), counters, hold_from)?;
        match (at_hold_end, *tx_held) {
            (false, true) => *tx_hold_gathered = false,
            (true, true) => *tx_hold_gathered = true,
            (true, false) => *tx_hold_paid = *tx_hold_gathered,
            (false, false) => {}
        }
        if *tx_held {
            if let Err(e) = tx_hold.arm() {
                crate::guest_log!(static log::Level::Warn, "virtio-net: cannot arm the transmit hold timer: {e}; notifications stay on");
                *tx_held = tx.transmit(backend.as_mut(), counters, usize::MAX)?;
            }
        }
        Ok(())
    }
}

struct Shared<M> {
    core: Mutex<Core<M>>,
    /// Tells the event loop to receive again and watch the backend.
    ready: EventFd,
    backend_fd: RawFd,
    hold_fd: RawFd,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, Core<M>> {
        // A panic while holding the lock leaves at worst a frame half
        // delivered, which the guest sees as a dropped frame.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal_ready(&self) {
        // Failure only means the counter is saturated: a wake-up is pending.
        let _ = self.ready.write(1);
    }
}

/// The event loop's handle on a [`Net`] device (see the module
/// documentation); cheap to clone, usable while the transport owns the
/// device.
pub struct NetHandle<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for NetHandle<M> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<M> std::fmt::Debug for NetHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle").field("backend_fd", &self.shared.backend_fd).finish_non_exhaustive()
    }
}

impl<M: GuestMemory> NetHandle<M> {
    /// Moves waiting frames from the backend to the guest; says whether to
    /// keep watching the backend.
    pub fn receive(&self) -> RxOutcome {
        let mut core = self.shared.lock();
        let Core { backend, rx, counters, .. } = &mut *core;
        let outcome = rx.receive(backend.as_mut(), counters);
        core.rx_failed = outcome == RxOutcome::BackendFailed;
        outcome
    }

    /// The descriptor that is readable while the backend has a frame.
    pub fn backend_fd(&self) -> RawFd {
        self.shared.backend_fd
    }

    /// Fires when [`Self::receive`] should run again (non-blocking; read it
    /// to clear it).
    pub fn ready_event(&self) -> &EventFd {
        &self.shared.ready
    }

    /// The descriptor that is readable when a transmit hold ends.
    pub fn hold_fd(&self) -> RawFd {
        self.shared.hold_fd
    }

    /// A transmit hold ended: sends what the driver queued during it,
    /// without a notification, and holds again or turns notifications
    /// back on.
    pub fn hold_ended(&self) {
        let mut core = self.shared.lock();
        core.tx_hold.acknowledge();
        if !core.tx_held {
            return;
        }
        // Sending is what a notification would have done; receiving
        // retries with it, as after a notification.
        if core.rx_failed {
            self.shared.signal_ready();
        }
        if let Err(e) = core.transmit(true) {
            log::debug!("virtio-net: transmitting at the end of a hold: {e}");
            core.tx_held = false;
            core.tx_broken.get_or_insert_with(|| e.to_string());
            // So that the driver's next notification arrives and reports it.
            if let Some(active) = core.tx.active.as_mut() {
                let _ = queue::resume_notifications(&mut active.queue, &*active.mem);
            }
        }
    }

    /// The device's counters so far.
    pub fn counters(&self) -> NetCounters {
        self.shared.lock().counters
    }
}

/// A virtio-net device (device ID 1).
pub struct Net<M> {
    config: ConfigSpace,
    queue_sizes: [u16; 2],
    shared: Arc<Shared<M>>,
}

impl<M> std::fmt::Debug for Net<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<M: GuestMemory> Net<M> {
    /// A device with MAC address `mac` on `backend`.
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>) -> Result<Self, NetError> {
        let ready = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(NetError::EventFd)?;
        let backend_fd = backend.readiness_fd();
        let tx_hold = TxHold::new().map_err(NetError::Timer)?;
        let hold_fd = tx_hold.fd();
        let core = Core {
            backend,
            rx: Receiver::new(NET_QUEUE_SIZE),
            tx: Transmitter::new(NET_QUEUE_SIZE),
            counters: NetCounters::default(),
            rx_failed: false,
            tx_hold,
            tx_held: false,
            tx_hold_paid: false,
            tx_hold_gathered: false,
            tx_broken: None,
        };
        Ok(Self {
            config: ConfigSpace::new(mac),
            queue_sizes: [NET_QUEUE_SIZE; 2],
            shared: Arc::new(Shared { core: Mutex::new(core), ready, backend_fd, hold_fd }),
        })
    }

    /// The event loop's handle, to keep before the device is boxed into
    /// its transport.
    pub fn handle(&self) -> NetHandle<M> {
        NetHandle { shared: self.shared.clone() }
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioDevice<M> for Net<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        config::FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError> {
        let Activation { mem, queues, acked_features, interrupt } = activation;
        let mut queues = queues.into_iter();
        let rx_queue = prepare_queue(usize::from(RECEIVEQ), queues.next(), &*mem, acked_features)?;
        let tx_queue = prepare_queue(usize::from(TRANSMITQ), queues.next(), &*mem, acked_features)?;
        let mut core = self.shared.lock();
        core.backend.set_offloads(config::offloads(acked_features))?;
        core.rx.clear();
        core.rx.mergeable = config::mergeable(acked_features);
        core.rx.active =
            Some(ActiveQueue { mem: mem.clone(), queue: rx_queue, interrupt: interrupt.clone() });
        core.tx.active = Some(ActiveQueue { mem, queue: tx_queue, interrupt });
        // The timer is left to fire (its end of hold finds nothing held):
        // this may run on a vCPU thread, whose filter allows no timers.
        core.tx_held = false;
        core.tx_hold_paid = false;
        core.tx_broken = None;
        core.rx_failed = false;
        drop(core);
        // Frames may be waiting, and the driver posted its receive buffers
        // before DRIVER_OK.
        self.shared.signal_ready();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let mut core = self.shared.lock();
        if core.tx.active.is_none() {
            log::debug!("virtio-net: notification before activation ignored");
            return Ok(());
        }
        let result = match u16::try_from(index) {
            Ok(RECEIVEQ) => {
                self.shared.signal_ready();
                Ok(())
            }
            Ok(TRANSMITQ) => {
                if core.rx_failed {
                    self.shared.signal_ready();
                }
                core.counters.tx_notifications += 1;
                match core.tx_broken.take() {
                    Some(msg) => Err(DeviceError::Queue(msg)),
                    None => core.transmit(false),
                }
            }
            _ => {
                log::debug!("virtio-net: notification for nonexistent queue {index} ignored");
                Ok(())
            }
        };
        result?;
        if !core.rx.reported {
            if let Some(msg) = core.rx.broken.clone() {
                core.rx.reported = true;
                return Err(DeviceError::Queue(msg));
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        let mut core = self.shared.lock();
        core.rx.clear();
        core.tx.active = None;
        // The timer is left to fire (its end of hold finds nothing held):
        // this may run on a vCPU thread, whose filter allows no timers.
        core.tx_held = false;
        core.tx_hold_paid = false;
        core.tx_broken = None;
        core.rx_failed = false;
        if let Err(e) = core.backend.set_offloads(Offloads::default()) {
            log::warn!("virtio-net: clearing the backend's offloads at reset: {e}");
        }
    }
}
