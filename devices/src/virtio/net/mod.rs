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
//! and on a transmit notification after a failed backend read. Transmit
//! happens on the driver's notification of `transmitq1`. Nothing blocks:
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
//! transport sets `DEVICE_NEEDS_RESET`); found while receiving, receiving
//! stops and the violation is reported at the next notification.
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

#[cfg(test)]
mod tests;

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use vm_memory::GuestMemory;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::device::{Activation, DeviceError, VirtioDevice};
use crate::virtio::queue::{prepare_queue, ActiveQueue};

pub use backend::{GuestFrame, NetBackend, Offloads, FRAME_MAX, VNET_HDR_LEN};
pub use counters::NetCounters;
pub use rx::RxOutcome;
pub use tap::{Tap, TapError, TAP_NAME_MAX};

use config::ConfigSpace;
use rx::Receiver;
use tx::Transmitter;

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
}

/// What the device and its handles share.
struct Core<M> {
    backend: Box<dyn NetBackend>,
    rx: Receiver<M>,
    tx: Transmitter<M>,
    counters: NetCounters,
    /// The last receive pass ended with a failed backend read.
    rx_failed: bool,
}

struct Shared<M> {
    core: Mutex<Core<M>>,
    /// Tells the event loop to receive again and watch the backend.
    ready: EventFd,
    backend_fd: RawFd,
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
        let core = Core {
            backend,
            rx: Receiver::new(NET_QUEUE_SIZE),
            tx: Transmitter::new(NET_QUEUE_SIZE),
            counters: NetCounters::default(),
            rx_failed: false,
        };
        Ok(Self {
            config: ConfigSpace::new(mac),
            queue_sizes: [NET_QUEUE_SIZE; 2],
            shared: Arc::new(Shared { core: Mutex::new(core), ready, backend_fd }),
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
                let Core { backend, tx, counters, .. } = &mut *core;
                counters.tx_notifications += 1;
                tx.transmit(backend.as_mut(), counters)
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
        core.rx_failed = false;
        if let Err(e) = core.backend.set_offloads(Offloads::default()) {
            log::warn!("virtio-net: clearing the backend's offloads at reset: {e}");
        }
    }
}
