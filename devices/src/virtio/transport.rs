//! What every virtio transport (mmio, pci) does the same way: feature
//! negotiation, the device status state machine, the driver's queue
//! configuration, notifications and the hand-over to the device at
//! `DRIVER_OK` (virtio 1.2, 2 and 3.1).
//!
//! A transport wraps a [`TransportCore`] and maps its own registers onto it;
//! the core never sees register offsets or access widths. The rules it
//! enforces, identical on every transport:
//!
//! - Features the transports cannot honour (packed rings, notification
//!   data, queue reset, SR-IOV, admin queues) are never offered, whatever
//!   the device says.
//! - `VIRTIO_F_ACCESS_PLATFORM` is the transport's, not the device's: it is
//!   offered exactly when the transport's [`DmaAccess`] says so, whatever
//!   the device says.
//! - `FEATURES_OK` is refused (it does not stick) if the driver accepted a
//!   feature that was not offered, did not accept `VIRTIO_F_VERSION_1`, or,
//!   when the [`DmaAccess`] requires it (an IOMMU translates the device's
//!   accesses), did not accept `VIRTIO_F_ACCESS_PLATFORM`. A refusal resets
//!   the device, the queues, the accepted features and the interrupt state;
//!   `ACKNOWLEDGE` and `DRIVER` stay set so that reading the status back
//!   shows exactly the missing `FEATURES_OK`.
//! - A queue size is checked at `DRIVER_OK`: a size that is zero, above the
//!   maximum or not a power of two, like a ring that is misaligned or outside
//!   the device's memory, fails activation, which sets `DEVICE_NEEDS_RESET`
//!   (the device never runs on a ring it cannot trust).
//! - Queue configuration is frozen while the selected queue is enabled and
//!   after `DRIVER_OK`; disabling a queue before `DRIVER_OK` is allowed
//!   (Linux's virtio-mmio driver does it when tearing down a half-set-up
//!   queue).
//! - Status bits are only cleared by writing 0; `DEVICE_NEEDS_RESET` cannot
//!   be written by the driver.
//! - A trapped notify write signals the queue's eventfd, the same one the
//!   VMM registers as an ioeventfd, and the event loop calls
//!   [`TransportCore::process_notification`], so device code stays off the
//!   vCPU threads. The exception is a device whose driver waits for each
//!   request ([`VirtioDevice::notify_inline`], the virtio-iommu): its
//!   notifications are processed on the vCPU thread of the notify write.

use std::fmt;
use std::sync::Arc;

use log::debug;
use log::Level::{Error, Warn};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest_log;
use crate::log_limit::GuestLogBudget;

use super::device::{Activation, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use super::dma_access::{DmaAccess, VIRTIO_F_ACCESS_PLATFORM};

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 0x01;
    /// The guest knows how to drive the device.
    pub const DRIVER: u32 = 0x02;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 0x04;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 0x08;
    /// The device hit an error and needs a reset (set by the device only).
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// Status bits the driver may set.
const DRIVER_STATUS_BITS: u32 =
    status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK | status::FEATURES_OK | status::FAILED;

/// Transport features (virtio 1.2, 6) no transport here implements and
/// therefore never offers: `VIRTIO_F_RING_PACKED` (34, the queues are split
/// rings), `VIRTIO_F_SR_IOV` (37), `VIRTIO_F_NOTIFICATION_DATA` (38, a
/// notification is the bare queue index), `VIRTIO_F_NOTIF_CONFIG_DATA` (39),
/// `VIRTIO_F_RING_RESET` (40, no queue reset register) and
/// `VIRTIO_F_ADMIN_VQ` (41).
const UNSUPPORTED_TRANSPORT_FEATURES: u64 =
    (1 << 34) | (1 << 37) | (1 << 38) | (1 << 39) | (1 << 40) | (1 << 41);

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device does not offer `VIRTIO_F_VERSION_1`; the transports are
    /// modern-only, so no driver could ever complete negotiation.
    #[error("{0}: the device does not offer VIRTIO_F_VERSION_1")]
    NoVersion1(String),
    /// A queue's maximum size is zero, above 32768 or not a power of two.
    #[error("{label}: queue {index} has an invalid maximum size {size}")]
    InvalidQueueMaxSize {
        /// The transport's label.
        label: String,
        /// Queue index.
        index: usize,
        /// The offending size.
        size: u16,
    },
    /// The device has more queues than the transport can address.
    #[error("{label}: {count} queues, this transport handles at most {max}")]
    TooManyQueues {
        /// The transport's label.
        label: String,
        /// The device's queue count.
        count: usize,
        /// The transport's limit.
        max: usize,
    },
    /// The PCI function could not be built.
    #[error("{label}: PCI function: {source}")]
    Pci {
        /// The transport's label.
        label: String,
        /// What went wrong.
        #[source]
        source: crate::pci::PciError,
    },
    /// Creating a queue's notification eventfd failed.
    #[error("{label}: cannot create the eventfd of queue {index}: {source}")]
    EventFd {
        /// The transport's label.
        label: String,
        /// Queue index.
        index: usize,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// A human-readable name for a virtio device ID (virtio 1.2, 5).
pub(crate) fn device_name(device_type: u32) -> String {
    match device_type {
        1 => "virtio-net".to_owned(),
        2 => "virtio-blk".to_owned(),
        3 => "virtio-console".to_owned(),
        4 => "virtio-rng".to_owned(),
        23 => "virtio-iommu".to_owned(),
        n => format!("virtio-{n}"),
    }
}

/// The transport-specific half of interrupt delivery, as the core needs it.
pub(crate) trait TransportInterrupt: VirtioInterrupt + 'static {
    /// The device was reset: forget pending interrupt state (and, on PCI,
    /// the driver's vector assignments).
    fn reset(&self);

    /// The device entered `DEVICE_NEEDS_RESET`: send a configuration-change
    /// interrupt (virtio 1.2, 2.1.2) without bumping the configuration
    /// generation.
    fn signal_needs_reset(&self) -> std::io::Result<()>;
}

/// The driver's view of one queue, as written through the registers; turned
/// into a `virtio_queue::Queue` (and checked) at `DRIVER_OK`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueConfig {
    pub(crate) max_size: u16,
    /// Raw size as written (validated at activation).
    pub(crate) size: u32,
    pub(crate) ready: bool,
    pub(crate) desc: u64,
    pub(crate) driver: u64,
    pub(crate) device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self { max_size, size: u32::from(max_size), ready: false, desc: 0, driver: 0, device: 0 }
    }

    fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The queue the device gets: disabled as configured, or ready and
    /// checked against `mem`.
    fn build<M: GuestMemory>(&self, mem: &M, event_idx: bool) -> Result<Queue, String> {
        let mut q = Queue::new(self.max_size).map_err(|e| format!("max size {}: {e}", self.max_size))?;
        if !self.ready {
            return Ok(q);
        }
        let size = u16::try_from(self.size).map_err(|_| format!("size {} too large", self.size))?;
        q.try_set_size(size).map_err(|e| format!("size {size} (max {}): {e}", self.max_size))?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e}", self.desc))?;
        q.try_set_avail_ring_address(GuestAddress(self.driver))
            .map_err(|e| format!("driver area {:#x}: {e}", self.driver))?;
        q.try_set_used_ring_address(GuestAddress(self.device))
            .map_err(|e| format!("device area {:#x}: {e}", self.device))?;
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(mem) {
            return Err(format!(
                "rings (descriptors {:#x}, driver {:#x}, device {:#x}, size {size}) are not accessible",
                self.desc, self.driver, self.device
            ));
        }
        Ok(q)
    }
}

/// Sets the low (`high == false`) or high half of `v` to `half`.
pub(crate) fn set_half(v: &mut u64, high: bool, half: u32) {
    if high {
        *v = (*v & 0xffff_ffff) | (u64::from(half) << 32);
    } else {
        *v = (*v & !0xffff_ffff) | u64::from(half);
    }
}

/// The transport-independent state of one virtio device.
///
/// Public only as the type behind [`VirtioTransport::core`]: it lives in a
/// private module and has no public fields or methods.
pub struct TransportCore<M: GuestMemory + Send + Sync + 'static> {
    pub(crate) device: Box<dyn VirtioDevice<M>>,
    mem: Arc<M>,
    pub(crate) label: String,
    device_type: u32,
    dma_access: DmaAccess,
    /// What the driver sees in the device feature registers.
    offered_features: u64,
    /// What the driver wrote to the driver feature registers (checked at
    /// `FEATURES_OK`).
    driver_features: u64,
    /// The driver accepted a feature above bit 63 (none is ever offered).
    driver_features_high_bank: bool,
    pub(crate) device_features_sel: u32,
    pub(crate) driver_features_sel: u32,
    pub(crate) queue_sel: u32,
    pub(crate) queues: Vec<QueueConfig>,
    queue_events: Vec<EventFd>,
    /// The transport's interrupt state, as the core drives it.
    interrupt: Arc<dyn TransportInterrupt>,
    /// The same interrupt state, as the device gets it at activation.
    device_interrupt: Arc<dyn VirtioInterrupt>,
    status: u32,
    /// The device accepted an activation and holds the queues.
    activated: bool,
    /// Every message below a driver can cause by repeating what it does.
    log_budget: GuestLogBudget,
}

impl<M: GuestMemory + Send + Sync + 'static> fmt::Debug for TransportCore<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportCore")
            .field("label", &self.label)
            .field("device_type", &self.device_type)
            .field("dma_access", &self.dma_access)
            .field("status", &format_args!("{:#x}", self.status))
            .field("driver_features", &format_args!("{:#x}", self.driver_features))
            .field("queues", &self.queues)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> TransportCore<M> {
    /// Checks `device` against what a modern transport needs and creates one
    /// notification eventfd per queue. `dma_access` decides
    /// `VIRTIO_F_ACCESS_PLATFORM`; `max_queues` is the transport's limit.
    pub(crate) fn new<I: TransportInterrupt>(
        device: Box<dyn VirtioDevice<M>>,
        mem: Arc<M>,
        interrupt: Arc<I>,
        dma_access: DmaAccess,
        max_queues: usize,
    ) -> Result<Self, TransportError> {
        let device_type = device.device_type();
        let label = device_name(device_type);
        let offered_features = (device.device_features()
            & !(UNSUPPORTED_TRANSPORT_FEATURES | VIRTIO_F_ACCESS_PLATFORM))
            | dma_access.offered_features();
        if offered_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(TransportError::NoVersion1(label));
        }
        let count = device.queue_max_sizes().len();
        if count > max_queues {
            return Err(TransportError::TooManyQueues { label, count, max: max_queues });
        }
        let mut queues = Vec::with_capacity(count);
        let mut queue_events = Vec::with_capacity(count);
        for (index, &size) in device.queue_max_sizes().iter().enumerate() {
            if Queue::new(size).is_err() {
                return Err(TransportError::InvalidQueueMaxSize { label, index, size });
            }
            queues.push(QueueConfig::new(size));
            let evt = match EventFd::new(EFD_NONBLOCK) {
                Ok(evt) => evt,
                Err(source) => return Err(TransportError::EventFd { label, index, source }),
            };
            queue_events.push(evt);
        }
        Ok(Self {
            device,
            mem,
            label,
            device_type,
            dma_access,
            offered_features,
            driver_features: 0,
            driver_features_high_bank: false,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues,
            queue_events,
            interrupt: interrupt.clone(),
            device_interrupt: interrupt,
            status: 0,
            activated: false,
            log_budget: GuestLogBudget::new(),
        })
    }

    pub(crate) fn device_type(&self) -> u32 {
        self.device_type
    }

    pub(crate) fn offered_features(&self) -> u64 {
        self.offered_features
    }

    pub(crate) fn dma_access(&self) -> DmaAccess {
        self.dma_access
    }

    pub(crate) fn status(&self) -> u32 {
        self.status
    }

    pub(crate) fn is_activated(&self) -> bool {
        self.activated && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    pub(crate) fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The driver notified queue `queue`: lets the device process it, if the
    /// device is running and the queue is enabled. A device error sets
    /// `DEVICE_NEEDS_RESET` and sends a configuration-change interrupt.
    pub(crate) fn process_notification(&mut self, queue: usize) {
        if !self.is_activated() || !self.queues.get(queue).is_some_and(|q| q.ready) {
            return;
        }
        if let Err(e) = self.device.process_queue(queue) {
            self.needs_reset(format_args!("queue {queue}: {e}"));
            return;
        }
        if self.device.work_left(queue) && !self.device.notify_inline() {
            self.signal_queue_event(queue);
        }
    }

    /// Hands queue `index` to the event loop, as the driver's notify write
    /// does through a registered ioeventfd.
    fn signal_queue_event(&self, index: usize) {
        match self.queue_events.get(index) {
            Some(evt) => {
                if let Err(e) = evt.write(1) {
                    guest_log!(
                        self.log_budget,
                        Error,
                        "{}: cannot signal the eventfd of queue {index}: {e}",
                        self.label
                    );
                }
            }
            None => debug!("{}: notification for nonexistent queue {index}", self.label),
        }
    }

    /// The selected bank of the offered features.
    pub(crate) fn device_features_bank(&self) -> u32 {
        match self.device_features_sel {
            0 => self.offered_features as u32,
            1 => (self.offered_features >> 32) as u32,
            _ => 0,
        }
    }

    /// The selected bank of the features the driver wrote.
    pub(crate) fn driver_features_bank(&self) -> u32 {
        match self.driver_features_sel {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        }
    }

    /// The driver writes the selected bank of the features it accepts.
    pub(crate) fn write_driver_features(&mut self, value: u32) {
        if self.status & (status::FEATURES_OK | status::DRIVER_OK) != 0 {
            debug!("{}: driver features written after FEATURES_OK, ignored", self.label);
            return;
        }
        match self.driver_features_sel {
            0 => set_half(&mut self.driver_features, false, value),
            1 => set_half(&mut self.driver_features, true, value),
            // No features above bit 63 exist: accepting one is accepting
            // something that was not offered.
            _ => self.driver_features_high_bank |= value != 0,
        }
    }

    /// The selected queue, if the queue selector names one.
    pub(crate) fn selected_queue(&self) -> Option<&QueueConfig> {
        usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get(i))
    }

    /// The selected queue if its configuration may still change: it is not
    /// enabled and the driver has not set `DRIVER_OK`.
    pub(crate) fn selected_queue_mut(&mut self) -> Option<&mut QueueConfig> {
        if self.status & status::DRIVER_OK != 0 {
            return None;
        }
        usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get_mut(i)).filter(|q| !q.ready)
    }

    /// The driver enables (or, before `DRIVER_OK`, disables) the selected
    /// queue.
    pub(crate) fn set_queue_ready(&mut self, ready: bool) {
        if self.status & status::DRIVER_OK != 0 {
            return;
        }
        if let Some(q) = usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get_mut(i)) {
            q.ready = ready;
        }
    }

    /// Puts the device into the error state (virtio 1.2, 2.1.2).
    fn needs_reset(&mut self, why: fmt::Arguments<'_>) {
        guest_log!(self.log_budget, Error, "{}: {why}; the device needs a reset", self.label);
        self.status |= status::DEVICE_NEEDS_RESET;
        if let Err(e) = self.interrupt.signal_needs_reset() {
            guest_log!(
                self.log_budget,
                Error,
                "{}: cannot send the configuration-change interrupt: {e}",
                self.label
            );
        }
    }

    /// Everything negotiated or configured goes back to its initial state;
    /// the caller sets the status.
    fn reset_device(&mut self) {
        self.device.reset();
        self.activated = false;
        self.driver_features = 0;
        self.driver_features_high_bank = false;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.queues.iter_mut().for_each(QueueConfig::reset);
        self.interrupt.reset();
    }

    /// Why the driver's feature set cannot be accepted, if it cannot.
    fn check_features(&self) -> Result<(), String> {
        let unoffered = self.driver_features & !self.offered_features;
        if unoffered != 0 || self.driver_features_high_bank {
            let high = if self.driver_features_high_bank { " and some above bit 63" } else { "" };
            return Err(format!("the driver accepted features that were not offered ({unoffered:#x}{high})"));
        }
        if self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(
                "the driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)".into()
            );
        }
        if self.dma_access.requires_access_platform() && self.driver_features & VIRTIO_F_ACCESS_PLATFORM == 0
        {
            return Err("the device is behind an IOMMU and the driver did not accept \
                        VIRTIO_F_ACCESS_PLATFORM (it would use guest-physical addresses)"
                .into());
        }
        Ok(())
    }

    /// The driver writes the device status.
    pub(crate) fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset_device();
            self.status = 0;
            return;
        }
        let old = self.status;
        let mut new = old | (value & DRIVER_STATUS_BITS);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            if old & status::DRIVER_OK != 0 {
                // Too late: the device already failed DRIVER_OK without it.
                guest_log!(self.log_budget, Warn, "{}: FEATURES_OK after DRIVER_OK ignored", self.label);
                new &= !status::FEATURES_OK;
            } else if let Err(why) = self.check_features() {
                guest_log!(
                    self.log_budget,
                    Warn,
                    "{}: refusing FEATURES_OK (features {:#x}): {why}",
                    self.label,
                    self.driver_features
                );
                self.reset_device();
                self.status = new & !(status::FEATURES_OK | status::DRIVER_OK);
                return;
            }
        }
        self.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.activate();
        }
    }

    /// The driver set `DRIVER_OK`: hand the queues to the device.
    fn activate(&mut self) {
        if self.status & status::FEATURES_OK == 0 {
            self.needs_reset(format_args!("DRIVER_OK without FEATURES_OK"));
            return;
        }
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, cfg) in self.queues.iter().enumerate() {
            match cfg.build(&*self.mem, event_idx) {
                Ok(q) => queues.push(q),
                Err(why) => {
                    self.needs_reset(format_args!("queue {i} is misconfigured: {why}"));
                    return;
                }
            }
        }
        let interrupt = self.device_interrupt.clone();
        let activation =
            Activation { mem: self.mem.clone(), queues, acked_features: self.driver_features, interrupt };
        match self.device.activate(activation) {
            Ok(()) => self.activated = true,
            Err(e) => self.needs_reset(format_args!("activation failed: {e}")),
        }
    }

    /// A trapped notify write for queue `index`: processed right here if
    /// the device asks for it ([`VirtioDevice::notify_inline`]), otherwise
    /// handed to the event loop through the queue's eventfd, exactly as a
    /// registered ioeventfd would.
    pub(crate) fn notify(&mut self, index: u64) {
        if self.device.notify_inline() {
            match usize::try_from(index) {
                Ok(queue) if queue < self.queues.len() => self.process_notification(queue),
                _ => debug!("{}: notification for nonexistent queue {index}", self.label),
            }
            return;
        }
        match usize::try_from(index) {
            Ok(queue) => self.signal_queue_event(queue),
            Err(_) => debug!("{}: notification for nonexistent queue {index}", self.label),
        }
    }
}

/// What every transport (mmio, pci) offers the VMM, whatever its registers:
/// provided methods over the `TransportCore` the transport wraps. Only
/// this crate's transports implement it.
pub trait VirtioTransport<M: GuestMemory + Send + Sync + 'static>: Send {
    /// The transport-independent state.
    #[doc(hidden)]
    fn core(&self) -> &TransportCore<M>;

    /// The transport-independent state, mutably.
    #[doc(hidden)]
    fn core_mut(&mut self) -> &mut TransportCore<M>;

    /// Replaces the name used in log messages (by default the device type,
    /// e.g. "virtio-blk"); the VMM may pass something like
    /// "virtio-blk@0xd0000000" or "virtio-blk@00:03.0".
    fn with_label(mut self, label: impl Into<String>) -> Self
    where
        Self: Sized,
    {
        self.core_mut().label = label.into();
        self
    }

    /// The name used in log messages.
    fn label(&self) -> &str {
        &self.core().label
    }

    /// The virtio device ID (virtio 1.2, 5).
    fn device_type(&self) -> u32 {
        self.core().device_type()
    }

    /// The features offered to the driver.
    fn offered_features(&self) -> u64 {
        self.core().offered_features()
    }

    /// The device's DMA path, which decides whether
    /// `VIRTIO_F_ACCESS_PLATFORM` is offered and required.
    fn dma_access(&self) -> DmaAccess {
        self.core().dma_access()
    }

    /// The device status.
    fn device_status(&self) -> u32 {
        self.core().status()
    }

    /// Whether the device is running (activated and not in error).
    fn is_activated(&self) -> bool {
        self.core().is_activated()
    }

    /// One eventfd per queue, in queue order. The VMM registers eventfd `i`
    /// as a KVM ioeventfd at queue `i`'s notify address (where that is
    /// depends on the transport), watches it in its event loop and, when it
    /// fires, reads it and calls [`Self::process_notification`]`(i)`.
    /// Trapped notify writes (no ioeventfd) signal the same eventfd.
    fn queue_events(&self) -> &[EventFd] {
        self.core().queue_events()
    }

    /// Whether notify writes are processed where they trap (see
    /// [`VirtioDevice::notify_inline`]): the VMM then registers no ioeventfd
    /// for this device's queues.
    fn notifies_inline(&self) -> bool {
        self.core().device.notify_inline()
    }

    /// The driver notified queue `queue`: lets the device process it, if the
    /// device is running and the queue is enabled. A device error sets
    /// `DEVICE_NEEDS_RESET` and sends a configuration-change interrupt.
    fn process_notification(&mut self, queue: usize) {
        self.core_mut().process_notification(queue);
    }
}
