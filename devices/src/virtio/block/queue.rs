//! The request loop shared by the queue-driven devices (block and rng): pop
//! every available chain, let the device handle it, put it in the used ring,
//! and signal the driver only when its notification suppression asks for it.
//!
//! Lives under `block/` for the same reason as [`super::chain`].

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;

use crate::virtio::device::{DeviceError, InterruptKind, VirtioInterrupt};

fn protocol(what: &str, e: virtio_queue::Error) -> DeviceError {
    DeviceError::Queue(format!("{what}: {e}"))
}

/// Processes every chain the driver made available on `queue` (virtio 1.2,
/// 2.7.13 and 2.7.14).
///
/// `handle` returns the used length of a chain (the number of bytes it
/// wrote to the driver). With `VIRTIO_RING_F_EVENT_IDX` the usual
/// disable / process / re-enable / re-check loop runs so that a chain made
/// available while notifications were off is not missed; the interrupt is
/// raised once at the end if `needs_notification` says so.
///
/// Errors (each makes the transport set `DEVICE_NEEDS_RESET`): the rings are
/// not accessible (through the IOMMU: unmapped), the available index moved
/// by more than the queue size, a chain head index outside the queue (it
/// cannot even be returned through the used ring), or `handle` failed.
pub(crate) fn drain<M, F>(
    queue: &mut Queue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
    queue_index: u16,
    mut handle: F,
) -> Result<(), DeviceError>
where
    M: GuestMemory,
    F: FnMut(DescriptorChain<&M>) -> Result<u32, DeviceError>,
{
    let mut used_any = false;
    loop {
        if queue.event_idx_enabled() {
            queue.disable_notification(mem).map_err(|e| protocol("disabling notifications", e))?;
        }
        loop {
            let chain = queue.iter(mem).map_err(|e| protocol("reading the available ring", e))?.next();
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            if head >= queue.size() {
                return Err(DeviceError::Queue(format!(
                    "available ring names descriptor {head}, queue size is {}",
                    queue.size()
                )));
            }
            let len = handle(chain)?;
            queue.add_used(mem, head, len).map_err(|e| protocol("writing the used ring", e))?;
            used_any = true;
        }
        if !queue.event_idx_enabled()
            || !queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))?
        {
            break;
        }
    }
    if used_any && queue.needs_notification(mem).map_err(|e| protocol("reading used_event", e))? {
        interrupt.trigger(InterruptKind::Queue(queue_index))?;
    }
    Ok(())
}
