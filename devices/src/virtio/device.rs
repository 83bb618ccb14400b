//! The contract between a virtio transport (mmio, pci) and a virtio device
//! (blk, net, rng, console): the transport owns the registers, feature
//! negotiation and the queue configuration; the device owns the
//! device-specific configuration space and what a request means.
//!
//! Devices are generic over vm-memory's [`GuestMemory`], so the same device
//! code runs on guest-physical memory (`direct-ram-access=on`) or on memory
//! that translates every access through the virtual IOMMU
//! (`dmavm_iommu::TranslatedMemory` or, behind VT-d,
//! `vm_memory::IommuMemory`; `direct-ram-access=off`).

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemory;

/// `VIRTIO_F_VERSION_1` (virtio 1.2, 6): modern device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_RING_F_INDIRECT_DESC` (virtio 1.2, 2.7.5.3).
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX` (virtio 1.2, 2.7.7).
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Why a device interrupts the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptKind {
    /// Used buffers were added to queue `n`.
    Queue(u16),
    /// The device configuration changed.
    Config,
}

/// How a device signals the driver; the transport implements it (mmio: the
/// interrupt status register and an IOAPIC pin; pci: MSI-X vectors).
pub trait VirtioInterrupt: Send + Sync {
    /// Signals the driver.
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()>;
}

/// What a device gets when the driver sets `DRIVER_OK`.
pub struct Activation<M: GuestMemory> {
    /// The memory the device's rings and buffers live in (translated or
    /// direct).
    pub mem: Arc<M>,
    /// The queues the driver configured, in queue-index order (a queue the
    /// driver left disabled is present with `ready() == false`).
    pub queues: Vec<Queue>,
    /// The features the driver accepted (a subset of the offered ones).
    pub acked_features: u64,
    /// Where interrupts go.
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

impl<M: GuestMemory> std::fmt::Debug for Activation<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("queues", &self.queues.len())
            .field("acked_features", &format_args!("{:#x}", self.acked_features))
            .finish_non_exhaustive()
    }
}

/// Why a device could not start or went wrong; the transport then sets
/// `DEVICE_NEEDS_RESET` (virtio 1.2, 2.1.2) and the VMM keeps running.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A queue the device needs was not made ready by the driver.
    #[error("queue {0} is not ready")]
    QueueNotReady(usize),
    /// The driver broke the virtqueue protocol (bad ring addresses, an
    /// impossible index, ...).
    #[error("virtqueue protocol violation: {0}")]
    Queue(String),
    /// The backend (file, host RNG) failed in a way the device cannot
    /// report per request.
    #[error("backend failure: {0}")]
    Backend(#[from] std::io::Error),
}

/// A virtio device, independent of its transport.
pub trait VirtioDevice<M: GuestMemory>: Send {
    /// Virtio device ID (virtio 1.2, 5): 2 block, 3 console, 4 entropy.
    fn device_type(&self) -> u32;

    /// Maximum size of each queue; the slice length is the queue count.
    fn queue_max_sizes(&self) -> &[u16];

    /// Every feature bit the device offers, transport-independent ones
    /// included (`VIRTIO_F_VERSION_1`). Not `VIRTIO_F_ACCESS_PLATFORM`: the
    /// transport offers that one from its [`DmaAccess`](super::DmaAccess),
    /// and drops it from what a device reports.
    fn device_features(&self) -> u64;

    /// Reads the device-specific configuration space at `offset`. Reads
    /// past its end return zeros.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device-specific configuration space (most devices have no
    /// writable fields and ignore it).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }

    /// The driver set `DRIVER_OK`: start processing with these queues.
    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError>;

    /// The driver notified queue `index` (from the event loop, through the
    /// queue's ioeventfd or a trapped notify write). Processes every
    /// available request and signals the driver as the queue's notification
    /// suppression asks.
    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError>;

    /// Whether the last [`Self::process_queue`]`(index)` stopped on the
    /// device's work budget with chains left to process. The transport then
    /// signals the queue's eventfd itself, so the event loop comes back to
    /// the queue after serving what else is ready, instead of one
    /// notification holding the loop for as long as the driver's buffers
    /// last. Only for devices processed on the event loop (not
    /// [`Self::notify_inline`]).
    fn work_left(&self, index: usize) -> bool {
        let _ = index;
        false
    }

    /// Back to the state before activation (the driver wrote status 0, or
    /// the transport refused `FEATURES_OK`); queues and memory are dropped.
    fn reset(&mut self);

    /// Whether the driver waits for each request before going on (the
    /// virtio-iommu: Linux spins on the used ring after every MAP and
    /// UNMAP). Such a device's notifications are processed on the thread
    /// of the trapped notify write, before the write completes, and the VMM
    /// registers no ioeventfd for them: handing a notification to the event
    /// loop and back costs two thread wake-ups per request, and a spinning
    /// vCPU may delay the event loop's thread for a whole time slice when
    /// they share a host CPU.
    fn notify_inline(&self) -> bool {
        false
    }
}
