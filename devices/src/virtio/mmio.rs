//! The virtio-mmio transport, version 2 ("modern") only (virtio 1.2, 4.2).
//!
//! One [`MmioTransport`] answers a [`WINDOW_SIZE`]-byte MMIO window: the
//! control registers of 4.2.2 in the first 0x100 bytes, the device-specific
//! configuration space from [`CONFIG_OFFSET`] on. It owns feature
//! negotiation, the queue registers and the interrupt status, and hands the
//! device an [`Activation`] when the driver sets `DRIVER_OK`.
//!
//! Choices this transport makes where the specification leaves room:
//!
//! - Control registers are 32 bits wide and 32-bit aligned; any other access
//!   below [`CONFIG_OFFSET`] reads as zero and writes are ignored. The
//!   configuration space is forwarded to the device at any width.
//!   Write-only registers read as zero.
//! - The vendor ID is [`VENDOR_ID`], "dmvm" in little-endian ASCII (the same
//!   convention as QEMU's "QEMU").
//! - Features the transport cannot honour (packed rings, notification data,
//!   queue reset, SR-IOV, admin queues) are never offered, whatever the
//!   device says.
//! - `FEATURES_OK` is refused (it does not stick) if the driver accepted a
//!   feature that was not offered, did not accept `VIRTIO_F_VERSION_1`, or,
//!   when the transport was built with `require_access_platform` (the device
//!   sits behind an IOMMU, see the DMA contract in DESIGN.md), did not accept
//!   `VIRTIO_F_ACCESS_PLATFORM`. A refusal resets the device, the queues,
//!   the accepted features and the interrupt status; `ACKNOWLEDGE` and
//!   `DRIVER` stay set so that reading Status back shows exactly the missing
//!   `FEATURES_OK`.
//! - `QueueNum` accepts any value but the size is checked at `DRIVER_OK`: a
//!   size that is zero, above `QueueNumMax` or not a power of two, like a ring
//!   that is misaligned or outside the device's memory, fails activation,
//!   which sets `DEVICE_NEEDS_RESET` (the device never runs on a ring it
//!   cannot trust).
//! - Queue registers are frozen while the selected queue is ready and after
//!   `DRIVER_OK`; writing 0 to `QueueReady` before `DRIVER_OK` is allowed
//!   (Linux does it when tearing down a half-set-up queue).
//! - Status bits are only cleared by writing 0; `DEVICE_NEEDS_RESET` cannot
//!   be written by the driver.
//! - Notifications never run device code on the vCPU thread: a trapped write
//!   to `QueueNotify` signals the queue's eventfd, the same one the VMM
//!   registers as an ioeventfd, and the event loop calls
//!   [`MmioTransport::process_notification`].
//! - Interrupts are edges: every trigger sets the InterruptStatus bit and
//!   pulses the line (the VMM declares the pin edge-triggered, active high),
//!   so an event arriving while the driver's handler runs is never lost.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use log::{debug, error, warn};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{
    Activation, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use crate::interrupt::InterruptLine;

/// Size of the MMIO window of one transport (virtio 1.2, 4.2.1: 0x200).
pub const WINDOW_SIZE: u64 = 0x200;
/// Offset of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;
/// Offset of the `QueueNotify` register: the VMM registers each queue's
/// eventfd ([`MmioTransport::queue_events`]) at `base + NOTIFY_OFFSET`, 4
/// bytes, with the queue index as datamatch.
pub const NOTIFY_OFFSET: u64 = 0x50;
/// `MagicValue`: "virt" in little-endian ASCII.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version`: 2, the non-legacy interface.
pub const VERSION: u32 = 2;
/// `VendorID` of dmavm's devices: "dmvm" in little-endian ASCII.
pub const VENDOR_ID: u32 = 0x6d76_6d64;

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

/// InterruptStatus bit: used buffers were added to a queue.
pub const INT_VRING: u32 = 0x1;
/// InterruptStatus bit: the configuration changed (or the device needs a
/// reset).
pub const INT_CONFIG: u32 = 0x2;

// Register offsets (virtio 1.2, 4.2.2, table 4.1).
const REG_MAGIC_VALUE: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = NOTIFY_OFFSET;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_SHM_SEL: u64 = 0x0ac;
const REG_SHM_LEN_LOW: u64 = 0x0b0;
const REG_SHM_LEN_HIGH: u64 = 0x0b4;
const REG_SHM_BASE_LOW: u64 = 0x0b8;
const REG_SHM_BASE_HIGH: u64 = 0x0bc;
const REG_CONFIG_GENERATION: u64 = 0x0fc;

/// Status bits the driver may set.
const DRIVER_STATUS_BITS: u32 =
    status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK | status::FEATURES_OK | status::FAILED;

/// Transport features (virtio 1.2, 6) this transport does not implement and
/// therefore never offers: `VIRTIO_F_RING_PACKED` (34, the queues are split
/// rings), `VIRTIO_F_SR_IOV` (37), `VIRTIO_F_NOTIFICATION_DATA` (38, the
/// ioeventfd datamatch is the bare queue index), `VIRTIO_F_NOTIF_CONFIG_DATA`
/// (39), `VIRTIO_F_RING_RESET` (40, no QueueReset register) and
/// `VIRTIO_F_ADMIN_VQ` (41).
const UNSUPPORTED_TRANSPORT_FEATURES: u64 =
    (1 << 34) | (1 << 37) | (1 << 38) | (1 << 39) | (1 << 40) | (1 << 41);

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device does not offer `VIRTIO_F_VERSION_1`; this transport is
    /// modern-only, so no driver could ever complete negotiation.
    #[error("{0}: the device does not offer VIRTIO_F_VERSION_1")]
    NoVersion1(String),
    /// The transport must require `VIRTIO_F_ACCESS_PLATFORM` (the device is
    /// behind an IOMMU) but the device does not offer it.
    #[error("{0}: the device is behind an IOMMU but does not offer VIRTIO_F_ACCESS_PLATFORM")]
    NoAccessPlatform(String),
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
fn device_name(device_type: u32) -> String {
    match device_type {
        1 => "virtio-net".to_owned(),
        2 => "virtio-blk".to_owned(),
        3 => "virtio-console".to_owned(),
        4 => "virtio-rng".to_owned(),
        23 => "virtio-iommu".to_owned(),
        n => format!("virtio-{n}"),
    }
}

/// The interrupt state shared between the transport (registers) and the
/// device (which triggers it from wherever it processes queues).
struct MmioInterrupt {
    /// InterruptStatus bits.
    status: AtomicU32,
    /// ConfigGeneration.
    config_generation: AtomicU32,
    line: Arc<dyn InterruptLine>,
}

impl MmioInterrupt {
    /// Sets `bits` in InterruptStatus and sends one edge.
    fn raise(&self, bits: u32) -> std::io::Result<()> {
        self.status.fetch_or(bits, Ordering::SeqCst);
        self.line.pulse().map_err(std::io::Error::other)
    }
}

impl VirtioInterrupt for MmioInterrupt {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        match kind {
            InterruptKind::Queue(_) => self.raise(INT_VRING),
            InterruptKind::Config => {
                // The configuration changed: a driver reading it across
                // this point must see a new generation and retry.
                self.config_generation.fetch_add(1, Ordering::SeqCst);
                self.raise(INT_CONFIG)
            }
        }
    }
}

/// The driver's view of one queue, as written through the registers; turned
/// into a `virtio_queue::Queue` (and checked) at `DRIVER_OK`.
#[derive(Debug, Clone, Copy)]
struct QueueConfig {
    max_size: u16,
    /// Raw `QueueNum` (validated at activation).
    size: u32,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
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
fn set_half(v: &mut u64, high: bool, half: u32) {
    if high {
        *v = (*v & 0xffff_ffff) | (u64::from(half) << 32);
    } else {
        *v = (*v & !0xffff_ffff) | u64::from(half);
    }
}

/// A virtio device behind a virtio-mmio (version 2) register window.
pub struct MmioTransport<M: GuestMemory + Send + Sync + 'static> {
    device: Box<dyn VirtioDevice<M>>,
    mem: Arc<M>,
    label: String,
    device_type: u32,
    require_access_platform: bool,
    /// What the driver sees in DeviceFeatures.
    offered_features: u64,
    /// What the driver wrote to DriverFeatures (checked at `FEATURES_OK`).
    driver_features: u64,
    /// The driver accepted a feature above bit 63 (none is ever offered).
    driver_features_high_bank: bool,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    queue_events: Vec<EventFd>,
    interrupt: Arc<MmioInterrupt>,
    status: u32,
    /// The device accepted an activation and holds the queues.
    activated: bool,
}

impl<M: GuestMemory + Send + Sync + 'static> fmt::Debug for MmioTransport<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioTransport")
            .field("label", &self.label)
            .field("device_type", &self.device_type)
            .field("status", &format_args!("{:#x}", self.status))
            .field("driver_features", &format_args!("{:#x}", self.driver_features))
            .field("queues", &self.queues)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> MmioTransport<M> {
    /// Wraps `device`, which will access its rings and buffers through
    /// `mem` (guest-physical or IOMMU-translated, per the DMA contract) and
    /// interrupt through `interrupt` (an edge-triggered pin).
    ///
    /// `require_access_platform` is true when the device sits behind an
    /// IOMMU: the driver must then accept `VIRTIO_F_ACCESS_PLATFORM` or
    /// `FEATURES_OK` is refused.
    pub fn new(
        device: Box<dyn VirtioDevice<M>>,
        mem: Arc<M>,
        interrupt: Arc<dyn InterruptLine>,
        require_access_platform: bool,
    ) -> Result<Self, MmioError> {
        let device_type = device.device_type();
        let label = device_name(device_type);
        let offered_features = device.device_features() & !UNSUPPORTED_TRANSPORT_FEATURES;
        if offered_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(MmioError::NoVersion1(label));
        }
        if require_access_platform && offered_features & VIRTIO_F_ACCESS_PLATFORM == 0 {
            return Err(MmioError::NoAccessPlatform(label));
        }
        let mut queues = Vec::new();
        let mut queue_events = Vec::new();
        for (index, &size) in device.queue_max_sizes().iter().enumerate() {
            if Queue::new(size).is_err() {
                return Err(MmioError::InvalidQueueMaxSize { label, index, size });
            }
            queues.push(QueueConfig::new(size));
            let evt = match EventFd::new(EFD_NONBLOCK) {
                Ok(evt) => evt,
                Err(source) => return Err(MmioError::EventFd { label, index, source }),
            };
            queue_events.push(evt);
        }
        Ok(Self {
            device,
            mem,
            label,
            device_type,
            require_access_platform,
            offered_features,
            driver_features: 0,
            driver_features_high_bank: false,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues,
            queue_events,
            interrupt: Arc::new(MmioInterrupt {
                status: AtomicU32::new(0),
                config_generation: AtomicU32::new(0),
                line: interrupt,
            }),
            status: 0,
            activated: false,
        })
    }

    /// Replaces the name used in log messages (by default the device type,
    /// e.g. "virtio-blk"); the VMM may pass something like
    /// "virtio-blk@0xd0000000".
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The name used in log messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The virtio device ID (virtio 1.2, 5).
    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    /// The features offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.offered_features
    }

    /// Whether `FEATURES_OK` requires `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn requires_access_platform(&self) -> bool {
        self.require_access_platform
    }

    /// The device status register.
    pub fn device_status(&self) -> u32 {
        self.status
    }

    /// Whether the device is running (activated and not in error).
    pub fn is_activated(&self) -> bool {
        self.activated && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    /// One eventfd per queue, in queue order. The VMM registers eventfd `i`
    /// as a KVM ioeventfd at `base + NOTIFY_OFFSET`, 4 bytes, datamatch `i`,
    /// watches it in its event loop and, when it fires, reads it and calls
    /// [`Self::process_notification`]`(i)`. Trapped notify writes (no
    /// ioeventfd) signal the same eventfd.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The driver notified queue `queue`: lets the device process it, if the
    /// device is running and the queue is enabled. A device error sets
    /// `DEVICE_NEEDS_RESET` and sends a configuration-change interrupt.
    pub fn process_notification(&mut self, queue: usize) {
        if !self.is_activated() || !self.queues.get(queue).is_some_and(|q| q.ready) {
            return;
        }
        if let Err(e) = self.device.process_queue(queue) {
            self.needs_reset(format_args!("queue {queue}: {e}"));
        }
    }

    /// The selected queue, if QueueSel names one.
    fn selected_queue(&self) -> Option<&QueueConfig> {
        usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get(i))
    }

    /// The selected queue if its configuration may still change: it is not
    /// ready and the driver has not set `DRIVER_OK`.
    fn selected_queue_mut(&mut self) -> Option<&mut QueueConfig> {
        if self.status & status::DRIVER_OK != 0 {
            return None;
        }
        usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get_mut(i)).filter(|q| !q.ready)
    }

    /// Puts the device into the error state (virtio 1.2, 2.1.2).
    fn needs_reset(&mut self, why: fmt::Arguments<'_>) {
        error!("{}: {why}; the device needs a reset", self.label);
        self.status |= status::DEVICE_NEEDS_RESET;
        if let Err(e) = self.interrupt.raise(INT_CONFIG) {
            error!("{}: cannot send the configuration-change interrupt: {e}", self.label);
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
        self.interrupt.status.store(0, Ordering::SeqCst);
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
        if self.require_access_platform && self.driver_features & VIRTIO_F_ACCESS_PLATFORM == 0 {
            return Err("the device is behind an IOMMU and the driver did not accept \
                        VIRTIO_F_ACCESS_PLATFORM (it would use guest-physical addresses)"
                .into());
        }
        Ok(())
    }

    fn write_status(&mut self, value: u32) {
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
                warn!("{}: FEATURES_OK after DRIVER_OK ignored", self.label);
                new &= !status::FEATURES_OK;
            } else if let Err(why) = self.check_features() {
                warn!("{}: refusing FEATURES_OK (features {:#x}): {why}", self.label, self.driver_features);
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
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        let activation =
            Activation { mem: self.mem.clone(), queues, acked_features: self.driver_features, interrupt };
        match self.device.activate(activation) {
            Ok(()) => self.activated = true,
            Err(e) => self.needs_reset(format_args!("activation failed: {e}")),
        }
    }

    fn read_register(&self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC_VALUE => MAGIC_VALUE,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device_type,
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features as u32,
                1 => (self.offered_features >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size)),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready)),
            REG_INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst) & (INT_VRING | INT_CONFIG),
            REG_STATUS => self.status,
            // No shared memory regions: a length of -1 says so (4.2.2).
            REG_SHM_LEN_LOW | REG_SHM_LEN_HIGH | REG_SHM_BASE_LOW | REG_SHM_BASE_HIGH => u32::MAX,
            REG_CONFIG_GENERATION => self.interrupt.config_generation.load(Ordering::SeqCst),
            _ => {
                debug!("{}: read of write-only or unknown register {offset:#x}", self.label);
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_DRIVER_FEATURES => {
                if self.status & (status::FEATURES_OK | status::DRIVER_OK) != 0 {
                    debug!("{}: DriverFeatures written after FEATURES_OK, ignored", self.label);
                    return;
                }
                match self.driver_features_sel {
                    0 => set_half(&mut self.driver_features, false, value),
                    1 => set_half(&mut self.driver_features, true, value),
                    // No features above bit 63 exist; accepting one would be
                    // accepting something not offered.
                    // No features above bit 63 exist: accepting one is
                    // accepting something that was not offered.
                    _ => self.driver_features_high_bank |= value != 0,
                }
            }
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM => {
                if let Some(q) = self.selected_queue_mut() {
                    q.size = value;
                }
            }
            REG_QUEUE_READY => {
                if let Some(q) = usize::try_from(self.queue_sel).ok().and_then(|i| self.queues.get_mut(i)) {
                    if self.status & status::DRIVER_OK == 0 {
                        q.ready = value & 1 != 0;
                    }
                }
            }
            REG_QUEUE_NOTIFY => self.notify(value),
            REG_INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
            }
            REG_STATUS => self.write_status(value),
            REG_QUEUE_DESC_LOW | REG_QUEUE_DESC_HIGH => {
                if let Some(q) = self.selected_queue_mut() {
                    set_half(&mut q.desc, offset == REG_QUEUE_DESC_HIGH, value);
                }
            }
            REG_QUEUE_DRIVER_LOW | REG_QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.selected_queue_mut() {
                    set_half(&mut q.driver, offset == REG_QUEUE_DRIVER_HIGH, value);
                }
            }
            REG_QUEUE_DEVICE_LOW | REG_QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.selected_queue_mut() {
                    set_half(&mut q.device, offset == REG_QUEUE_DEVICE_HIGH, value);
                }
            }
            // There are no shared memory regions to select.
            REG_SHM_SEL => {}
            _ => debug!("{}: write of {value:#x} to read-only or unknown register {offset:#x}", self.label),
        }
    }

    /// A trapped QueueNotify write: hand it to the event loop through the
    /// queue's eventfd, exactly as a registered ioeventfd would.
    fn notify(&self, value: u32) {
        match usize::try_from(value).ok().and_then(|i| self.queue_events.get(i)) {
            Some(evt) => {
                if let Err(e) = evt.write(1) {
                    error!("{}: cannot signal the eventfd of queue {value}: {e}", self.label);
                }
            }
            None => debug!("{}: notification for nonexistent queue {value}", self.label),
        }
    }

    /// Whether `[offset, offset + len)` lies in the configuration space.
    fn in_config(offset: u64, len: usize) -> bool {
        offset >= CONFIG_OFFSET
            && u64::try_from(len)
                .ok()
                .and_then(|l| offset.checked_add(l))
                .is_some_and(|end| end <= WINDOW_SIZE)
    }
}

impl<M: GuestMemory + Send + Sync + 'static> crate::bus::BusDevice for MmioTransport<M> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG_OFFSET {
            if Self::in_config(offset, data.len()) {
                self.device.read_config(offset - CONFIG_OFFSET, data);
            }
            return;
        }
        if offset % 4 != 0 {
            return;
        }
        if let Ok(bytes) = <&mut [u8; 4]>::try_from(data) {
            *bytes = self.read_register(offset).to_le_bytes();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            if Self::in_config(offset, data.len()) {
                self.device.write_config(offset - CONFIG_OFFSET, data);
            }
            return;
        }
        if offset % 4 != 0 {
            return;
        }
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use vm_memory::GuestMemoryMmap;

    use super::*;
    use crate::bus::BusDevice;
    use crate::interrupt::InterruptError;
    use crate::virtio::device::DeviceError;

    type Mem = GuestMemoryMmap<()>;

    const MEM_SIZE: u64 = 0x10_0000;
    const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | 0x5;

    /// What a queue looked like when the device got it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct SeenQueue {
        ready: bool,
        size: u16,
        desc: u64,
        avail: u64,
        used: u64,
        event_idx: bool,
    }

    #[derive(Default)]
    struct Record {
        activations: Vec<(Vec<SeenQueue>, u64)>,
        resets: usize,
        processed: Vec<usize>,
        config_writes: Vec<(u64, Vec<u8>)>,
        interrupt: Option<Arc<dyn VirtioInterrupt>>,
        fail_activate: bool,
        fail_process: bool,
    }

    struct MockDevice {
        features: u64,
        sizes: Vec<u16>,
        record: Arc<Mutex<Record>>,
    }

    impl VirtioDevice<Mem> for MockDevice {
        fn device_type(&self) -> u32 {
            4
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &self.sizes
        }
        fn device_features(&self) -> u64 {
            self.features
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as u8).wrapping_add(i as u8).wrapping_add(0xa0);
            }
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            self.record.lock().unwrap().config_writes.push((offset, data.to_vec()));
        }
        fn activate(&mut self, activation: Activation<Mem>) -> Result<(), DeviceError> {
            let mut r = self.record.lock().unwrap();
            let queues = activation
                .queues
                .iter()
                .map(|q| SeenQueue {
                    ready: q.ready(),
                    size: q.size(),
                    desc: q.desc_table(),
                    avail: q.avail_ring(),
                    used: q.used_ring(),
                    event_idx: q.event_idx_enabled(),
                })
                .collect();
            r.activations.push((queues, activation.acked_features));
            r.interrupt = Some(activation.interrupt);
            if r.fail_activate {
                return Err(DeviceError::QueueNotReady(1));
            }
            Ok(())
        }
        fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
            let mut r = self.record.lock().unwrap();
            r.processed.push(index);
            if r.fail_process {
                return Err(DeviceError::Queue("bad ring".into()));
            }
            Ok(())
        }
        fn reset(&mut self) {
            let mut r = self.record.lock().unwrap();
            r.resets += 1;
            r.interrupt = None;
        }
    }

    #[derive(Default)]
    struct MockLine {
        asserts: AtomicUsize,
        deasserts: AtomicUsize,
    }

    impl InterruptLine for MockLine {
        fn assert(&self) -> Result<(), InterruptError> {
            self.asserts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn deassert(&self) -> Result<(), InterruptError> {
            self.deasserts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl MockLine {
        fn pulses(&self) -> usize {
            self.deasserts.load(Ordering::SeqCst)
        }
    }

    struct Fixture {
        t: MmioTransport<Mem>,
        record: Arc<Mutex<Record>>,
        line: Arc<MockLine>,
    }

    fn fixture_with(features: u64, require_access_platform: bool) -> Fixture {
        let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap());
        let record = Arc::new(Mutex::new(Record::default()));
        let device = MockDevice { features, sizes: vec![256, 16], record: record.clone() };
        let line = Arc::new(MockLine::default());
        let t = MmioTransport::new(Box::new(device), mem, line.clone(), require_access_platform).unwrap();
        Fixture { t, record, line }
    }

    fn fixture() -> Fixture {
        fixture_with(FEATURES, false)
    }

    fn r(t: &mut MmioTransport<Mem>, offset: u64) -> u32 {
        let mut b = [0xffu8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport<Mem>, offset: u64, v: u32) {
        t.write(offset, &v.to_le_bytes());
    }

    /// Queue `i`'s rings: descriptors at 0x10000 * (i + 1), driver area
    /// 0x1000 above, device area 0x2000 above.
    fn rings(i: u32) -> (u64, u64, u64) {
        let base = 0x1_0000 * u64::from(i + 1);
        (base, base + 0x1000, base + 0x2000)
    }

    /// Linux's virtio_mmio probe up to and including the FEATURES_OK
    /// read-back; returns whether FEATURES_OK stuck.
    fn negotiate(t: &mut MmioTransport<Mem>, accept: impl Fn(u64) -> u64) -> bool {
        assert_eq!(r(t, REG_MAGIC_VALUE), MAGIC_VALUE);
        assert_eq!(r(t, REG_VERSION), 2);
        assert_ne!(r(t, REG_DEVICE_ID), 0);
        w(t, REG_STATUS, 0);
        assert_eq!(r(t, REG_STATUS), 0);
        w(t, REG_STATUS, status::ACKNOWLEDGE);
        w(t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(t, REG_DEVICE_FEATURES_SEL, 1);
        let mut offered = u64::from(r(t, REG_DEVICE_FEATURES)) << 32;
        w(t, REG_DEVICE_FEATURES_SEL, 0);
        offered |= u64::from(r(t, REG_DEVICE_FEATURES));
        let acked = accept(offered);
        w(t, REG_DRIVER_FEATURES_SEL, 1);
        w(t, REG_DRIVER_FEATURES, (acked >> 32) as u32);
        w(t, REG_DRIVER_FEATURES_SEL, 0);
        w(t, REG_DRIVER_FEATURES, acked as u32);
        w(t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        r(t, REG_STATUS) & status::FEATURES_OK != 0
    }

    /// Linux's vm_setup_vq for queue `i` with `size` entries.
    fn setup_queue(t: &mut MmioTransport<Mem>, i: u32, size: u32) {
        w(t, REG_QUEUE_SEL, i);
        assert_eq!(r(t, REG_QUEUE_READY), 0);
        assert!(r(t, REG_QUEUE_NUM_MAX) >= size);
        w(t, REG_QUEUE_NUM, size);
        let (desc, avail, used) = rings(i);
        w(t, REG_QUEUE_DESC_LOW, desc as u32);
        w(t, REG_QUEUE_DESC_HIGH, (desc >> 32) as u32);
        w(t, REG_QUEUE_DRIVER_LOW, avail as u32);
        w(t, REG_QUEUE_DRIVER_HIGH, (avail >> 32) as u32);
        w(t, REG_QUEUE_DEVICE_LOW, used as u32);
        w(t, REG_QUEUE_DEVICE_HIGH, (used >> 32) as u32);
        w(t, REG_QUEUE_READY, 1);
        assert_eq!(r(t, REG_QUEUE_READY), 1);
    }

    /// The whole Linux init sequence, accepting every offered feature.
    fn bring_up(t: &mut MmioTransport<Mem>) {
        assert!(negotiate(t, |f| f));
        setup_queue(t, 0, 128);
        setup_queue(t, 1, 16);
        w(t, REG_STATUS, 0xf);
    }

    fn seen(i: u32, size: u16, event_idx: bool) -> SeenQueue {
        let (desc, avail, used) = rings(i);
        SeenQueue { ready: true, size, desc, avail, used, event_idx }
    }

    #[test]
    fn identification_registers() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(r(&mut t, REG_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        assert_eq!(r(&mut t, REG_DEVICE_ID), 4);
        assert_eq!(r(&mut t, REG_VENDOR_ID), VENDOR_ID);
        assert_eq!(t.device_type(), 4);
        assert_eq!(t.label(), "virtio-rng");
        // Narrow or misaligned reads of registers are zero.
        let mut b = [0xffu8; 2];
        t.read(REG_MAGIC_VALUE, &mut b);
        assert_eq!(b, [0, 0]);
        let mut b = [0xffu8; 4];
        t.read(REG_MAGIC_VALUE + 1, &mut b);
        assert_eq!(b, [0; 4]);
        let mut b = [0xffu8; 8];
        t.read(REG_MAGIC_VALUE, &mut b);
        assert_eq!(b, [0; 8]);
        // No shared memory regions.
        w(&mut t, REG_SHM_SEL, 0);
        assert_eq!(r(&mut t, REG_SHM_LEN_LOW), u32::MAX);
        assert_eq!(r(&mut t, REG_SHM_LEN_HIGH), u32::MAX);
        // Write-only registers read as zero.
        assert_eq!(r(&mut t, REG_QUEUE_NOTIFY), 0);
        assert_eq!(r(&mut t, REG_DRIVER_FEATURES), 0);
    }

    #[test]
    fn linux_init_sequence_activates_device() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        assert!(t.is_activated());
        let rec = record.lock().unwrap();
        assert_eq!(rec.activations.len(), 1);
        let (queues, features) = &rec.activations[0];
        assert_eq!(*features, FEATURES);
        assert_eq!(queues, &vec![seen(0, 128, true), seen(1, 16, true)]);
    }

    #[test]
    fn disabled_queue_is_handed_over_not_ready() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f & !VIRTIO_RING_F_EVENT_IDX));
        setup_queue(&mut t, 1, 8);
        w(&mut t, REG_STATUS, 0xf);
        let rec = record.lock().unwrap();
        let (queues, features) = &rec.activations[0];
        assert_eq!(*features, FEATURES & !VIRTIO_RING_F_EVENT_IDX);
        assert!(!queues[0].ready);
        assert_eq!(queues[1], seen(1, 8, false));
    }

    #[test]
    fn offered_features_are_split_in_banks() {
        let Fixture { mut t, .. } = fixture_with(FEATURES | (1 << 34) | (1 << 40), false);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), FEATURES as u32);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        // Packed rings and queue reset are not offered by this transport.
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 0);
        assert_eq!(t.offered_features(), FEATURES);
    }

    #[test]
    fn features_ok_refused_without_version_1() {
        let Fixture { mut t, record, .. } = fixture();
        let resets = record.lock().unwrap().resets;
        assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_VERSION_1));
        assert_eq!(r(&mut t, REG_STATUS), status::ACKNOWLEDGE | status::DRIVER);
        // One for the driver's status 0, one for the refusal.
        assert_eq!(record.lock().unwrap().resets, resets + 2);
        // DRIVER_OK now cannot activate anything.
        w(&mut t, REG_STATUS, 0x7);
        assert!(record.lock().unwrap().activations.is_empty());
        assert!(!t.is_activated());
        assert_ne!(r(&mut t, REG_STATUS) & status::DEVICE_NEEDS_RESET, 0);
        // A reset and a proper negotiation work.
        bring_up(&mut t);
        assert!(t.is_activated());
    }

    #[test]
    fn features_ok_refused_for_unoffered_features() {
        let Fixture { mut t, .. } = fixture();
        assert!(!negotiate(&mut t, |f| f | (1 << 20)));
        let Fixture { mut t, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        // Bank 2 (bits 64..) holds nothing.
        w(&mut t, REG_STATUS, 0);
        w(&mut t, REG_STATUS, 0x3);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 2);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(&mut t, REG_STATUS, 0xb);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
    }

    #[test]
    fn access_platform_required_behind_iommu() {
        let features = FEATURES | VIRTIO_F_ACCESS_PLATFORM;
        let Fixture { mut t, record, .. } = fixture_with(features, true);
        assert!(t.requires_access_platform());
        assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
        assert_eq!(record.lock().unwrap().resets, 2);
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 0, 256);
        w(&mut t, REG_STATUS, 0xf);
        assert_eq!(record.lock().unwrap().activations[0].1, features);

        // Without an IOMMU the driver may decline it.
        let Fixture { mut t, record, .. } = fixture_with(features, false);
        assert!(negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
        setup_queue(&mut t, 0, 256);
        w(&mut t, REG_STATUS, 0xf);
        assert_eq!(record.lock().unwrap().activations[0].1, FEATURES);
    }

    #[test]
    fn constructor_rejects_impossible_devices() {
        let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap());
        let line: Arc<dyn InterruptLine> = Arc::new(MockLine::default());
        let make = |features: u64, sizes: Vec<u16>, require: bool| {
            let record = Arc::new(Mutex::new(Record::default()));
            let device = MockDevice { features, sizes, record };
            MmioTransport::new(Box::new(device), mem.clone(), line.clone(), require)
        };
        assert!(matches!(make(0x1, vec![16], false), Err(MmioError::NoVersion1(_))));
        assert!(matches!(make(FEATURES, vec![16], true), Err(MmioError::NoAccessPlatform(_))));
        for bad in [0, 3, 0x8000 + 1] {
            assert!(matches!(
                make(FEATURES, vec![16, bad], false),
                Err(MmioError::InvalidQueueMaxSize { index: 1, .. })
            ));
        }
        let t = make(FEATURES, vec![], false).unwrap().with_label("rng@0xd0000000");
        assert_eq!(t.label(), "rng@0xd0000000");
        assert!(t.queue_events().is_empty());
    }

    #[test]
    fn status_zero_resets_everything() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        let resets = record.lock().unwrap().resets;
        record.lock().unwrap().interrupt.clone().unwrap().trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING);
        w(&mut t, REG_QUEUE_SEL, 1);
        w(&mut t, REG_STATUS, 0);
        assert_eq!(record.lock().unwrap().resets, resets + 1);
        assert_eq!(r(&mut t, REG_STATUS), 0);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 0);
        assert!(!t.is_activated());
        for i in 0..2 {
            w(&mut t, REG_QUEUE_SEL, i);
            assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        }
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 16);
        // Notifications after a reset do not reach the device.
        t.process_notification(0);
        assert!(record.lock().unwrap().processed.is_empty());
        // And a second bring-up works from scratch.
        bring_up(&mut t);
        assert_eq!(record.lock().unwrap().activations.len(), 2);
        assert_eq!(record.lock().unwrap().activations[1].0[1], seen(1, 16, true));
    }

    #[test]
    fn status_bits_cannot_be_cleared_or_forged() {
        let Fixture { mut t, .. } = fixture();
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
        w(&mut t, REG_STATUS, status::DEVICE_NEEDS_RESET | 0x30 | 0x3);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
        w(&mut t, REG_STATUS, status::FAILED);
        assert_eq!(r(&mut t, REG_STATUS), 0x83);
    }

    #[test]
    fn queue_registers_frozen_when_ready_and_after_driver_ok() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 0, 64);
        // Ready: changes are ignored.
        w(&mut t, REG_QUEUE_NUM, 32);
        w(&mut t, REG_QUEUE_DESC_LOW, 0x8000);
        w(&mut t, REG_QUEUE_DRIVER_HIGH, 1);
        w(&mut t, REG_QUEUE_DEVICE_LOW, 0x9000);
        // Un-readying before DRIVER_OK is allowed, and unfreezes.
        w(&mut t, REG_QUEUE_SEL, 1);
        setup_queue(&mut t, 1, 16);
        w(&mut t, REG_QUEUE_READY, 0);
        assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        w(&mut t, REG_QUEUE_NUM, 8);
        w(&mut t, REG_QUEUE_READY, 1);
        w(&mut t, REG_STATUS, 0xf);
        // After DRIVER_OK nothing changes, not even QueueReady.
        w(&mut t, REG_QUEUE_SEL, 0);
        w(&mut t, REG_QUEUE_READY, 0);
        assert_eq!(r(&mut t, REG_QUEUE_READY), 1);
        let rec = record.lock().unwrap();
        assert_eq!(rec.activations[0].0, vec![seen(0, 64, true), seen(1, 8, true)]);
    }

    #[test]
    fn bad_queue_configuration_needs_reset() {
        // Not a power of two, too large, misaligned, outside memory.
        let cases: [(u32, u64); 4] = [(100, 0), (512, 0), (64, 0x8), (64, MEM_SIZE)];
        for (size, desc_shift) in cases {
            let Fixture { mut t, record, line } = fixture();
            assert!(negotiate(&mut t, |f| f));
            w(&mut t, REG_QUEUE_SEL, 0);
            w(&mut t, REG_QUEUE_NUM, size);
            w(&mut t, REG_QUEUE_DESC_LOW, (0x1_0000 + desc_shift) as u32);
            w(&mut t, REG_QUEUE_DRIVER_LOW, 0x1_1000);
            w(&mut t, REG_QUEUE_DEVICE_LOW, 0x1_2000);
            w(&mut t, REG_QUEUE_READY, 1);
            w(&mut t, REG_STATUS, 0xf);
            assert!(record.lock().unwrap().activations.is_empty(), "size {size} shift {desc_shift:#x}");
            assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
            assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
            assert_eq!(line.pulses(), 1);
            assert!(!t.is_activated());
        }
    }

    #[test]
    fn device_errors_set_needs_reset() {
        let Fixture { mut t, record, line } = fixture();
        record.lock().unwrap().fail_activate = true;
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
        assert_eq!(line.pulses(), 1);
        t.process_notification(0);
        assert!(record.lock().unwrap().processed.is_empty());

        // Reset clears the error; a failing queue sets it again.
        record.lock().unwrap().fail_activate = false;
        w(&mut t, REG_STATUS, 0);
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        record.lock().unwrap().fail_process = true;
        t.process_notification(1);
        assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
        assert_eq!(line.pulses(), 2);
        t.process_notification(1);
        assert_eq!(record.lock().unwrap().processed, vec![1]);
    }

    #[test]
    fn notify_signals_eventfd_and_process_forwards() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        w(&mut t, NOTIFY_OFFSET, 1);
        w(&mut t, NOTIFY_OFFSET, 1);
        w(&mut t, NOTIFY_OFFSET, 2);
        w(&mut t, NOTIFY_OFFSET, u32::MAX);
        assert_eq!(t.queue_events()[1].read().unwrap(), 2);
        assert_eq!(t.queue_events()[0].read().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        // The trapped write itself never reaches the device.
        assert!(record.lock().unwrap().processed.is_empty());
        t.process_notification(1);
        t.process_notification(0);
        t.process_notification(2);
        t.process_notification(usize::MAX);
        assert_eq!(record.lock().unwrap().processed, vec![1, 0]);
    }

    #[test]
    fn notification_of_disabled_queue_is_dropped() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 1, 16);
        t.process_notification(1);
        assert!(record.lock().unwrap().processed.is_empty(), "not yet DRIVER_OK");
        w(&mut t, REG_STATUS, 0xf);
        t.process_notification(0);
        t.process_notification(1);
        assert_eq!(record.lock().unwrap().processed, vec![1]);
    }

    #[test]
    fn interrupt_status_and_ack() {
        let Fixture { mut t, record, line } = fixture();
        bring_up(&mut t);
        let irq = record.lock().unwrap().interrupt.clone().unwrap();
        let generation = r(&mut t, REG_CONFIG_GENERATION);
        irq.trigger(InterruptKind::Queue(1)).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING);
        assert_eq!(line.pulses(), 1);
        irq.trigger(InterruptKind::Config).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING | INT_CONFIG);
        assert_eq!(r(&mut t, REG_CONFIG_GENERATION), generation.wrapping_add(1));
        assert_eq!(line.pulses(), 2);
        // Every trigger is an edge, even with the bit already pending.
        irq.trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(line.pulses(), 3);
        assert_eq!(line.asserts.load(Ordering::SeqCst), 3);
        w(&mut t, REG_INTERRUPT_ACK, INT_VRING);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
        w(&mut t, REG_INTERRUPT_ACK, u32::MAX);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 0);
    }

    #[test]
    fn out_of_range_queue_select() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        for sel in [2, 0x8000, u32::MAX] {
            w(&mut t, REG_QUEUE_SEL, sel);
            assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0);
            w(&mut t, REG_QUEUE_NUM, 16);
            w(&mut t, REG_QUEUE_DESC_LOW, 0x1000);
            w(&mut t, REG_QUEUE_READY, 1);
            assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        }
        w(&mut t, REG_STATUS, 0xf);
        let rec = record.lock().unwrap();
        assert!(rec.activations[0].0.iter().all(|q| !q.ready));
    }

    #[test]
    fn config_space_forwarded_at_any_width() {
        let Fixture { mut t, record, .. } = fixture();
        let mut b = [0u8; 1];
        t.read(CONFIG_OFFSET + 3, &mut b);
        assert_eq!(b, [0xa3]);
        let mut b = [0u8; 8];
        t.read(CONFIG_OFFSET + 0x10, &mut b);
        assert_eq!(b, [0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7]);
        // Spilling past the window reads zeros and is not forwarded.
        let mut b = [0xffu8; 4];
        t.read(WINDOW_SIZE - 2, &mut b);
        assert_eq!(b, [0; 4]);
        t.write(CONFIG_OFFSET + 2, &[1, 2]);
        t.write(WINDOW_SIZE - 2, &[1, 2, 3, 4]);
        t.write(u64::MAX, &[1]);
        assert_eq!(record.lock().unwrap().config_writes, vec![(2, vec![1, 2])]);
    }

    /// xorshift64*: deterministic garbage.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn garbage_sweep_never_panics() {
        let Fixture { mut t, record, .. } = fixture();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..64 {
            if round % 4 == 1 {
                bring_up(&mut t);
            }
            if round % 8 == 3 {
                // Small values hit the meaningful cases (selectors, sizes,
                // status bits) more often.
                for reg in [REG_QUEUE_SEL, REG_DEVICE_FEATURES_SEL, REG_DRIVER_FEATURES_SEL] {
                    w(&mut t, reg, (rng.next() % 4) as u32);
                }
            }
            for offset in (0..WINDOW_SIZE).chain([WINDOW_SIZE, WINDOW_SIZE + 4, u64::MAX - 3, u64::MAX]) {
                for size in [1usize, 2, 4, 8] {
                    let mut buf = [0u8; 8];
                    t.read(offset, &mut buf[..size]);
                    let v = if rng.next() % 2 == 0 { rng.next() % 0x100 } else { rng.next() };
                    t.write(offset, &v.to_le_bytes()[..size]);
                }
                if rng.next() % 16 == 0 {
                    t.process_notification((rng.next() % 4) as usize);
                }
            }
            let mut empty = [0u8; 0];
            t.read(REG_STATUS, &mut empty);
            t.write(REG_STATUS, &[]);
            let mut big = [0u8; 32];
            t.read(CONFIG_OFFSET, &mut big);
            t.write(REG_STATUS, &big);
            if let Some(irq) = record.lock().unwrap().interrupt.clone() {
                let _ = irq.trigger(InterruptKind::Config);
            }
        }
        // Still usable afterwards.
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        assert!(t.is_activated());
    }
}
