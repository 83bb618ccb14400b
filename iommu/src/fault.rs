//! Fault reporting (virtio 1.2, 5.13.6.9): failed translations become
//! `struct virtio_iommu_fault` reports on the event queue.
//!
//! Faults happen wherever an endpoint's device model runs (any thread), so
//! they go through a queue behind a mutex. A fault is written to
//! the next event buffer the driver made available, at once if there is
//! one; otherwise it waits, up to [`MAX_PENDING_FAULTS`] of them (later ones
//! are counted and dropped, which the spec allows), until the driver makes
//! buffers available and notifies the event queue, or until activation.
//! Device reset drops the waiting faults.
//!
//! An event buffer must be device-writable and hold 24 bytes; one that does
//! not is returned with used length 0 and the fault waits for the next one.

use std::collections::VecDeque;
use std::sync::Arc;

use dmavm_devices::virtio::chain::{slices, walk};
use dmavm_devices::virtio::queue::{notify_used, pop};
use dmavm_devices::virtio::{DeviceError, VirtioInterrupt};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestMemory, Permissions};

use crate::request::{Fault, FAULT_SIZE};

/// Most faults kept while the driver has no event buffer available.
pub const MAX_PENDING_FAULTS: usize = 128;

/// Where faults are written: the activated event queue. Type-erased so that
/// the endpoints (not generic over the IOMMU's own memory) can deliver.
pub(crate) trait FaultSink: Send {
    /// Writes the faults at the front of `pending` into the available event
    /// buffers, removing the delivered ones, and interrupts the driver if
    /// any buffer was used.
    fn deliver(&mut self, pending: &mut VecDeque<Fault>) -> Result<(), DeviceError>;
}

/// The event queue (queue 1) once the driver activated the device.
pub(crate) struct EventQueue<M> {
    pub(crate) mem: Arc<M>,
    pub(crate) queue: Queue,
    pub(crate) interrupt: Arc<dyn VirtioInterrupt>,
}

/// Index of the event queue.
pub(crate) const EVENT_QUEUE: u16 = 1;

fn protocol(what: &str, e: virtio_queue::Error) -> DeviceError {
    DeviceError::Queue(format!("event queue: {what}: {e}"))
}

impl<M: GuestMemory + Send + Sync> FaultSink for EventQueue<M> {
    fn deliver(&mut self, pending: &mut VecDeque<Fault>) -> Result<(), DeviceError> {
        let mem = &*self.mem;
        let max_descriptors = self.queue.size();
        let mut used_any = false;
        while let Some(fault) = pending.front() {
            let Some(chain) = pop(&mut self.queue, mem)? else { break };
            let head = chain.head_index();
            let bytes = fault.to_bytes();
            let written = match walk(chain, max_descriptors) {
                Ok(buffers) if buffers.iter().all(|b| b.write_only) => {
                    match slices(mem, &buffers, FAULT_SIZE, Permissions::Write) {
                        Ok(s) if s.iter().map(|s| s.len()).sum::<usize>() == FAULT_SIZE => {
                            let mut at = 0;
                            for s in &s {
                                s.copy_from(&bytes[at..at + s.len()]);
                                at += s.len();
                            }
                            FAULT_SIZE as u32
                        }
                        _ => 0,
                    }
                }
                _ => 0,
            };
            if written == 0 {
                log::debug!("virtio-iommu: unusable event buffer {head} returned unused");
            } else {
                pending.pop_front();
            }
            self.queue.add_used(mem, head, written).map_err(|e| protocol("writing the used ring", e))?;
            used_any = true;
        }
        if self.queue.event_idx_enabled() {
            // Ask to be notified of the next buffer the driver adds.
            self.queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))?;
        }
        if used_any {
            notify_used(&mut self.queue, mem, &*self.interrupt, EVENT_QUEUE)?;
        }
        Ok(())
    }
}

/// Faults waiting for an event buffer, and where to deliver them.
#[derive(Default)]
pub(crate) struct FaultQueue {
    pub(crate) pending: VecDeque<Fault>,
    pub(crate) sink: Option<Box<dyn FaultSink>>,
    pub(crate) dropped: u64,
}

impl std::fmt::Debug for FaultQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultQueue")
            .field("pending", &self.pending.len())
            .field("active", &self.sink.is_some())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl FaultQueue {
    /// Queues `fault` (or drops it if too many wait) and delivers what the
    /// available event buffers can take.
    pub(crate) fn report(&mut self, fault: Fault) {
        if self.pending.len() >= MAX_PENDING_FAULTS {
            self.dropped += 1;
            log::debug!("virtio-iommu: fault queue full, fault dropped: {fault:?}");
        } else {
            self.pending.push_back(fault);
        }
        if let Err(e) = self.deliver() {
            // The next notification of the event queue reports it to the
            // transport.
            dmavm_devices::guest_log!(static log::Level::Warn, "virtio-iommu: cannot deliver a fault: {e}");
        }
    }

    /// Delivers waiting faults, if the device is active.
    pub(crate) fn deliver(&mut self) -> Result<(), DeviceError> {
        match self.sink.as_mut() {
            Some(sink) => sink.deliver(&mut self.pending),
            None => Ok(()),
        }
    }
}
