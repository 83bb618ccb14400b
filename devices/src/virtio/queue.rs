//! Queue handling shared by the queue-driven devices (block, net, rng, console):
//! taking a queue over at activation, popping chains with the checks
//! virtio-queue leaves to the device, the request loop, and interrupting the
//! driver only when its notification suppression asks for it.
//!
//! [`prepare_queue`], [`pop`], [`drain`] and [`notify_used`] are public for
//! the device models outside this crate (the virtio-iommu in `dmavm-iommu`).

use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;

use crate::virtio::device::{
    Activation, DeviceError, InterruptKind, VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX,
};

pub(crate) fn protocol(what: &str, e: virtio_queue::Error) -> DeviceError {
    DeviceError::Queue(format!("{what}: {e}"))
}

/// Checks that queue `index` is ready and its rings are accessible, and
/// applies the negotiated `VIRTIO_RING_F_EVENT_IDX`.
pub fn prepare_queue<M: GuestMemory>(
    index: usize,
    queue: Option<Queue>,
    mem: &M,
    acked_features: u64,
) -> Result<Queue, DeviceError> {
    let Some(mut queue) = queue else {
        return Err(DeviceError::QueueNotReady(index));
    };
    if !queue.ready() {
        return Err(DeviceError::QueueNotReady(index));
    }
    if !queue.is_valid(mem) {
        return Err(DeviceError::Queue(format!("queue {index}: rings not accessible in guest memory")));
    }
    queue.set_event_idx(acked_features & VIRTIO_RING_F_EVENT_IDX != 0);
    Ok(queue)
}

/// A queue the driver set up, with what the device needs to process it.
pub(crate) struct ActiveQueue<M> {
    pub(crate) mem: Arc<M>,
    pub(crate) queue: Queue,
    pub(crate) interrupt: Arc<dyn VirtioInterrupt>,
}

impl<M: GuestMemory> ActiveQueue<M> {
    /// Takes queue 0 of `activation` for a single-queue device (see
    /// [`prepare_queue`]).
    pub(crate) fn single(activation: Activation<M>) -> Result<Self, DeviceError> {
        let Activation { mem, queues, acked_features, interrupt } = activation;
        let queue = prepare_queue(0, queues.into_iter().next(), &*mem, acked_features)?;
        Ok(Self { mem, queue, interrupt })
    }
}

/// The queue a single-queue device named `device` processes for a
/// notification of queue `index`: `None` (logged and ignored) before
/// activation or for a queue other than 0.
pub(crate) fn single_queue_notified<'a, M>(
    active: Option<&'a mut ActiveQueue<M>>,
    device: &str,
    index: usize,
) -> Option<&'a mut ActiveQueue<M>> {
    let Some(active) = active else {
        log::debug!("{device}: notification before activation ignored");
        return None;
    };
    if index != 0 {
        log::debug!("{device}: notification for nonexistent queue {index} ignored");
        return None;
    }
    Some(active)
}

/// Pops the next chain the driver made available, `None` when there is
/// none.
///
/// Errors (each makes the transport set `DEVICE_NEEDS_RESET`): the rings are
/// not accessible (through the IOMMU: unmapped), the available index moved
/// by more than the queue size, or the chain's head index is outside the
/// queue (it cannot even be returned through the used ring).
pub fn pop<'m, M: GuestMemory>(
    queue: &mut Queue,
    mem: &'m M,
) -> Result<Option<DescriptorChain<&'m M>>, DeviceError> {
    let chain = queue.iter(mem).map_err(|e| protocol("reading the available ring", e))?.next();
    let Some(chain) = chain else { return Ok(None) };
    let head = chain.head_index();
    if head >= queue.size() {
        return Err(DeviceError::Queue(format!(
            "available ring names descriptor {head}, queue size is {}",
            queue.size()
        )));
    }
    Ok(Some(chain))
}

/// Whether the driver has made chains available that the device has not
/// popped yet.
pub(crate) fn has_available<M: GuestMemory>(queue: &Queue, mem: &M) -> Result<bool, DeviceError> {
    let idx = queue
        .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
        .map_err(|e| protocol("reading the available index", e))?;
    Ok(idx.0 != queue.next_avail())
}

/// Interrupts the driver for queue `queue_index` if chains were used since
/// the last call and its notification suppression (`used_event` with
/// `VIRTIO_RING_F_EVENT_IDX`) asks for it.
pub fn notify_used<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
    queue_index: u16,
) -> Result<(), DeviceError> {
    if queue.needs_notification(mem).map_err(|e| protocol("reading used_event", e))? {
        interrupt.trigger(InterruptKind::Queue(queue_index))?;
    }
    Ok(())
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
/// Errors: those of [`pop`], the used ring not being writable, or `handle`
/// failing.
pub fn drain<M, F>(
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
    drain_until(queue, mem, interrupt, queue_index, |chain| handle(chain).map(Handled::Used))?;
    Ok(())
}

/// [`drain`] for a device that gathers the driver's requests over a short
/// hold instead of taking a notification for each (virtio-net's transmit
/// queue): turns `queue`'s notifications off, processes every chain
/// available and leaves them off; returns how many chains it used. The
/// device calls it again when its hold ends, and
/// [`resume_notifications`] once a call used nothing, so an idle queue
/// notifies again. With `VIRTIO_RING_F_EVENT_IDX`, "off" means
/// `avail_event` is not moved (virtio 1.2, 2.7.10): the driver notifies at
/// most once for the chains it adds meanwhile; without it, the used ring's
/// `VIRTQ_USED_F_NO_NOTIFY` flag is set.
///
/// Errors: as [`drain`].
pub(crate) fn drain_holding<M, F>(
    queue: &mut Queue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
    queue_index: u16,
    mut handle: F,
) -> Result<usize, DeviceError>
where
    M: GuestMemory,
    F: FnMut(DescriptorChain<&M>) -> Result<u32, DeviceError>,
{
    queue.disable_notification(mem).map_err(|e| protocol("disabling notifications", e))?;
    let mut used = 0;
    while let Some(chain) = pop(queue, mem)? {
        let head = chain.head_index();
        let len = handle(chain)?;
        queue.add_used(mem, head, len).map_err(|e| protocol("writing the used ring", e))?;
        used += 1;
    }
    if used > 0 {
        notify_used(queue, mem, interrupt, queue_index)?;
    }
    Ok(used)
}

/// Turns `queue`'s notifications back on after [`drain_holding`]; `true`
/// if the driver made chains available in the meantime, which it may not
/// notify for: the device processes them at once.
pub(crate) fn resume_notifications<M: GuestMemory>(queue: &mut Queue, mem: &M) -> Result<bool, DeviceError> {
    queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))
}

/// What a [`drain_until`] handler did with a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Finished: the chain goes to the used ring with this used length.
    Used(u32),
    /// Not finished (the handler's work budget ran out): the chain stays at
    /// the head of the available ring, to be popped again next time.
    Later,
}

/// How a [`drain_until`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// No chain is left available.
    Empty,
    /// The handler stopped at a chain it did not finish; the device must
    /// arrange to be called again.
    Stopped,
}

/// [`drain`] for a device that bounds the work of one notification: the
/// handler may answer [`Handled::Later`] for a chain, which is put back and
/// ends the call with [`Drained::Stopped`]. The chains finished before it
/// are used and the driver interrupted as usual. With
/// `VIRTIO_RING_F_EVENT_IDX`, notifications stay disabled after a stop:
/// the driver need not notify for a queue the device is still working on.
pub fn drain_until<M, F>(
    queue: &mut Queue,
    mem: &M,
    interrupt: &dyn VirtioInterrupt,
    queue_index: u16,
    mut handle: F,
) -> Result<Drained, DeviceError>
where
    M: GuestMemory,
    F: FnMut(DescriptorChain<&M>) -> Result<Handled, DeviceError>,
{
    let mut used_any = false;
    let mut end = Drained::Empty;
    'rounds: loop {
        if queue.event_idx_enabled() {
            queue.disable_notification(mem).map_err(|e| protocol("disabling notifications", e))?;
        }
        while let Some(chain) = pop(queue, mem)? {
            let head = chain.head_index();
            match handle(chain)? {
                Handled::Used(len) => {
                    queue.add_used(mem, head, len).map_err(|e| protocol("writing the used ring", e))?;
                    used_any = true;
                }
                Handled::Later => {
                    queue.go_to_previous_position();
                    end = Drained::Stopped;
                    break 'rounds;
                }
            }
        }
        if !queue.event_idx_enabled()
            || !queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))?
        {
            break;
        }
    }
    if used_any {
        notify_used(queue, mem, interrupt, queue_index)?;
    }
    Ok(end)
}
