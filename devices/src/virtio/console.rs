//! virtio-console (virtio 1.2, 5.3) with a single port: the guest's `hvc0`
//! wired to a host byte stream (dmavm: stdout and stdin).
//!
//! # Queues and features
//!
//! `receiveq0` (index 0, device to driver) and `transmitq0` (index 1, driver
//! to device), [`CONSOLE_QUEUE_SIZE`] entries each. Offered features:
//! `VIRTIO_F_VERSION_1`, `VIRTIO_RING_F_INDIRECT_DESC`,
//! `VIRTIO_RING_F_EVENT_IDX` (`VIRTIO_F_ACCESS_PLATFORM` is the transport's
//! to offer, from its [`DmaAccess`](crate::virtio::DmaAccess)). Neither `VIRTIO_CONSOLE_F_SIZE` nor
//! `VIRTIO_CONSOLE_F_MULTIPORT` nor `VIRTIO_CONSOLE_F_EMERG_WRITE` is
//! offered, so the configuration space (`cols`, `rows`, `max_nr_ports`,
//! `emerg_wr`) reads as zeros and writes to it are ignored.
//!
//! # Output
//!
//! Every chain on `transmitq0` is written, bytes of its device-readable
//! buffers in order, to the [`Write`] given to [`Console::new`], which is
//! flushed after each notification; the chain is returned with used length
//! 0 (the device wrote nothing into it). A host write error drops the
//! output (logged once until writes succeed again): the guest's console
//! never stalls or breaks because the host stopped reading.
//!
//! One pass over the queue writes at most [`CONSOLE_TRANSMIT_BUDGET`]
//! bytes. When chains are left, the one the budget ran out in stays
//! available with the count of its bytes already written, and
//! [`VirtioDevice::work_left`] has the transport schedule another pass
//! after the event loop's other ready work: a driver that posts gigabytes
//! of output gets all of it, but cannot hold the loop while it is written.
//!
//! # Input and flow control
//!
//! The VMM pushes host bytes with [`ConsoleInput::push_input`] (or
//! [`Console::push_input`]): they fill the receive buffers the driver
//! posted, in order, each chain returned as soon as the bytes run out or its
//! buffers are full, with the number of bytes written as its used length.
//! What does not fit is not taken: the return value says how much was, and
//! the VMM offers the rest again later. Nothing is buffered in the device.
//!
//! The VMM learns when to offer more through [`ConsoleInput::input_room`]
//! (the driver has posted receive buffers the device has not used yet) and
//! [`ConsoleInput::input_ready_event`], an eventfd the device signals when
//! receive buffers may have become available: at activation, when the
//! driver notifies `receiveq0`, and when buffers were posted while
//! [`ConsoleInput::push_input`] ran. The loop is: read the host, push; while
//! bytes are left over and there is no room, stop reading the host and wait
//! for the event (read it to clear it), then push the leftover and resume.
//! With `VIRTIO_RING_F_EVENT_IDX` the device keeps `avail_event` at the
//! first entry it has not consumed, so the driver notifies exactly when it
//! posts a buffer into an empty queue, which is when the VMM is waiting.
//!
//! Because the transport owns the device ([`VirtioDevice`] is boxed into
//! it), the VMM keeps a [`ConsoleInput`] handle from [`Console::input`]
//! before handing the device over; handle and device share the receive
//! queue behind a mutex.
//!
//! # Hostile chains
//!
//! As for the other devices (see the block device's table): a structurally
//! broken chain (loop, bad `next`, bad indirect table, longer than the
//! queue, over 2^32 bytes) is returned with used length 0 and none of its
//! buffers touched. A receive chain with a device-readable buffer, or whose
//! buffers (the part the input would fill) are not writable in guest memory
//! or through the IOMMU, is returned with used length 0 and nothing written;
//! the input goes to the next chain. A transmit chain with a device-writable
//! buffer, or whose buffers are not readable, produces no output (a chain
//! longer than one pass: no more output from the pass that finds an
//! unreadable buffer on). A head
//! index outside the queue, an available index more than a queue size
//! ahead, or rings that are not accessible are protocol violations: found
//! during a notification they fail [`VirtioDevice::process_queue`] (the
//! transport sets `DEVICE_NEEDS_RESET`); found while pushing input, the
//! input side stops taking bytes and the violation is reported at the next
//! notification.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use virtio_queue::QueueT;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{GuestMemory, Permissions, VolatileSlice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::chain::{skip_bytes, slices, walk as walk_chain, Buffer};
use crate::virtio::device::{
    Activation, DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::virtio::queue::{
    drain_until, has_available, notify_used, pop, prepare_queue, protocol, ActiveQueue, Drained, Handled,
};

/// Size of each of the two queues the device offers.
pub const CONSOLE_QUEUE_SIZE: u16 = 256;

/// Index of `receiveq0` (device to driver).
const RECEIVEQ: u16 = 0;
/// Index of `transmitq0` (driver to device).
const TRANSMITQ: u16 = 1;
/// Output is copied out of guest memory through a buffer of this size.
const BOUNCE_LEN: usize = 4096;

/// Most bytes of guest output one transmit notification writes to the
/// host. A driver can post a queue of chains each reading all of guest
/// memory many times over (descriptors may overlap); without a bound one
/// notification would hold the event loop, and every other device on it,
/// for as long as that takes. Linux's `hvc` console writes at most a page
/// per chain, far below it. What is left waits for the next
/// pass, which the transport schedules at once ([`VirtioDevice::work_left`]):
/// no output is lost.
pub const CONSOLE_TRANSMIT_BUDGET: usize = 1 << 20;

/// Why a [`Console`] cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The input-ready eventfd could not be created.
    #[error("cannot create the console's input-ready eventfd")]
    EventFd(#[source] std::io::Error),
}

/// The receive queue's state.
struct Receiver<M> {
    /// `receiveq0` once the driver set it up.
    active: Option<ActiveQueue<M>>,
    /// A protocol violation found while pushing input; no more input is
    /// taken until the device is reset.
    broken: Option<String>,
    /// `broken` was returned from a notification already.
    reported: bool,
}

impl<M> Receiver<M> {
    fn clear(&mut self) {
        self.active = None;
        self.broken = None;
        self.reported = false;
    }
}

/// The input side, shared by the device and its [`ConsoleInput`] handles:
/// the receive queue's state and the eventfd that tells the VMM to push
/// input again.
struct InputSide<M> {
    rx: Mutex<Receiver<M>>,
    ready: EventFd,
}

impl<M> InputSide<M> {
    fn lock(&self) -> MutexGuard<'_, Receiver<M>> {
        // Poisoning cannot leave the receiver inconsistent in a way that
        // matters more than losing console input; keep going.
        self.rx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the VMM that receive buffers may be available.
    fn signal_ready(&self) {
        // Failure only means the counter is saturated: a wake-up is pending.
        let _ = self.ready.write(1);
    }
}

/// The VMM's handle on a [`Console`]'s input side; cheap to clone, usable
/// while the transport owns the device. See the module documentation for
/// the flow-control loop.
pub struct ConsoleInput<M> {
    side: Arc<InputSide<M>>,
}

impl<M> Clone for ConsoleInput<M> {
    fn clone(&self) -> Self {
        Self { side: self.side.clone() }
    }
}

impl<M> std::fmt::Debug for ConsoleInput<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleInput").finish_non_exhaustive()
    }
}

impl<M: GuestMemory> ConsoleInput<M> {
    /// Copies as much of `bytes` as fits into the receive buffers the
    /// driver posted, returns them to the driver (interrupting it as its
    /// notification suppression asks) and returns how many bytes were
    /// taken. 0 before activation, after a reset, when the driver has no
    /// receive buffers posted, or after a protocol violation. The rest must
    /// be offered again, when [`Self::input_ready_event`] fires.
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        let mut rx = self.side.lock();
        if bytes.is_empty() || rx.broken.is_some() {
            return 0;
        }
        let Some(active) = rx.active.as_mut() else {
            return 0;
        };
        let mut taken = 0;
        let result = deliver(active, bytes, &mut taken);
        match result {
            Ok(more) => {
                if more && taken < bytes.len() {
                    // The driver posted buffers after the device ran out.
                    self.side.signal_ready();
                }
            }
            Err(e) => {
                crate::guest_log!(static log::Level::Error, "virtio-console: {e}; console input stopped until the device is reset");
                rx.broken = Some(e.to_string());
            }
        }
        taken
    }

    /// Whether the driver has posted receive buffers the device has not
    /// used yet: input pushed now is (at least partly) taken. False before
    /// activation, after a reset and after a protocol violation.
    pub fn input_room(&self) -> bool {
        let rx = self.side.lock();
        match (&rx.active, &rx.broken) {
            (Some(active), None) => has_available(&active.queue, &*active.mem).unwrap_or(false),
            _ => false,
        }
    }

    /// Signalled (a non-blocking eventfd) when receive buffers may have
    /// become available; the VMM watches it while input is paused and
    /// reads it to clear it.
    pub fn input_ready_event(&self) -> &EventFd {
        &self.side.ready
    }
}

/// Fills receive chains with `bytes` until they run out or no chain is
/// left (at most one queue's worth of chains per call), adding the count to
/// `taken` as it goes. Returns whether chains are available after all (the
/// driver posted more while the device was filling).
fn deliver<M: GuestMemory>(
    active: &mut ActiveQueue<M>,
    bytes: &[u8],
    taken: &mut usize,
) -> Result<bool, DeviceError> {
    let mem = &*active.mem;
    let queue = &mut active.queue;
    let max_descriptors = queue.size();
    let mut used_any = false;
    for _ in 0..queue.size() {
        if *taken == bytes.len() {
            break;
        }
        let Some(chain) = pop(queue, mem)? else { break };
        let head = chain.head_index();
        let len = match walk_chain(chain, max_descriptors) {
            Ok(buffers) => fill(mem, &buffers, &bytes[*taken..]),
            Err(e) => {
                log::debug!("virtio-console: {e}; receive chain returned unused");
                0
            }
        };
        queue.add_used(mem, head, len).map_err(|e| protocol("writing the used ring", e))?;
        used_any = true;
        // `len` is at most the bytes left.
        *taken += len as usize;
    }
    // Keep `avail_event` at the first entry not consumed: the driver
    // notifies when it posts into a queue the device has emptied.
    let more = if queue.event_idx_enabled() {
        queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))?
    } else {
        has_available(queue, mem)?
    };
    if used_any {
        notify_used(queue, mem, &*active.interrupt, RECEIVEQ)?;
    }
    Ok(more)
}

/// Writes the start of `data` into a receive chain's buffers; returns the
/// used length (0 if the chain is refused).
fn fill<M: GuestMemory>(mem: &M, buffers: &[Buffer], data: &[u8]) -> u32 {
    if buffers.iter().any(|b| !b.write_only) {
        log::debug!("virtio-console: receive chain has device-readable buffers; returned unused");
        return 0;
    }
    let room: u64 = buffers.iter().map(|b| u64::from(b.len)).sum();
    let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len()).min(u32::MAX as usize);
    let targets = match slices(mem, buffers, n, Permissions::Write) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("virtio-console: receive buffer not writable: {e}; returned unused");
            return 0;
        }
    };
    let mut done = 0;
    for s in &targets {
        // The slices add up to exactly `n` bytes.
        let chunk = s.len().min(n - done);
        s.copy_from(&data[done..done + chunk]);
        done += chunk;
    }
    // At most u32::MAX.
    done as u32
}

/// Where the guest's output goes.
struct Output {
    sink: Box<dyn Write + Send>,
    bounce: Vec<u8>,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
    /// Bytes already written of the chain at the head of the available
    /// ring: a chain longer than what was left of a notification's budget
    /// is written over several passes.
    resume: usize,
}

impl Output {
    fn result(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    crate::guest_log!(static log::Level::Warn, "virtio-console: host output failed: {e}; guest output dropped");
                }
                self.failing = true;
            }
        }
    }

    /// Writes the device-readable buffers of a transmit chain, from
    /// `self.resume` on and at most `budget` bytes of them (taken off
    /// `budget`). [`Handled::Later`] if the budget ran out first.
    ///
    /// Readability is checked for the part written in one pass, all or
    /// nothing: a chain that fits in one pass, as every real driver's
    /// does, is written whole or not at all. A longer chain whose next part
    /// is unreadable ends there.
    fn emit<M: GuestMemory>(&mut self, mem: &M, buffers: &[Buffer], budget: &mut usize) -> Handled {
        let skip = std::mem::take(&mut self.resume);
        if buffers.iter().any(|b| b.write_only) {
            log::debug!("virtio-console: transmit chain has device-writable buffers; ignored");
            return Handled::Used(0);
        }
        let Some(rest) = skip_bytes(buffers, skip) else {
            log::debug!("virtio-console: transmit buffer wraps the address space; ignored");
            return Handled::Used(0);
        };
        let sources = match slices(mem, &rest, *budget, Permissions::Read) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("virtio-console: transmit buffer not readable: {e}; ignored");
                return Handled::Used(0);
            }
        };
        let mut written = 0;
        for s in &sources {
            let r = self.copy_out(s);
            self.result(r);
            written += s.len();
        }
        *budget -= written;
        let total: u64 = rest.iter().map(|b| u64::from(b.len)).sum();
        if (written as u64) < total {
            self.resume = skip + written;
            Handled::Later
        } else {
            Handled::Used(0)
        }
    }

    fn copy_out<B: BitmapSlice>(&mut self, s: &VolatileSlice<'_, B>) -> std::io::Result<()> {
        let mut off = 0;
        while off < s.len() {
            let n = (s.len() - off).min(self.bounce.len());
            let n = s.subslice(off, n).map_err(std::io::Error::other)?.copy_to(&mut self.bounce[..n]);
            self.sink.write_all(&self.bounce[..n])?;
            off += n;
        }
        Ok(())
    }
}

/// A virtio console device (device ID 3) with one port.
pub struct Console<M> {
    features: u64,
    queue_sizes: [u16; 2],
    output: Output,
    /// `transmitq0` once the driver set it up.
    tx: Option<ActiveQueue<M>>,
    /// The last transmit pass stopped on [`CONSOLE_TRANSMIT_BUDGET`].
    tx_work_left: bool,
    input: ConsoleInput<M>,
}

impl<M> std::fmt::Debug for Console<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("features", &format_args!("{:#x}", self.features))
            .field("active", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemory> Console<M> {
    /// A console whose guest output goes to `output` (dmavm: stdout).
    pub fn new(output: Box<dyn Write + Send>) -> Result<Self, ConsoleError> {
        let features = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX;
        let ready = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(ConsoleError::EventFd)?;
        let side = Arc::new(InputSide {
            rx: Mutex::new(Receiver { active: None, broken: None, reported: false }),
            ready,
        });
        Ok(Self {
            features,
            queue_sizes: [CONSOLE_QUEUE_SIZE; 2],
            output: Output { sink: output, bounce: vec![0; BOUNCE_LEN], failing: false, resume: 0 },
            tx_work_left: false,
            tx: None,
            input: ConsoleInput { side },
        })
    }

    /// A handle on the input side for the VMM's event loop, to keep before
    /// the device is boxed into its transport.
    pub fn input(&self) -> ConsoleInput<M> {
        self.input.clone()
    }

    /// See [`ConsoleInput::push_input`].
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        self.input.push_input(bytes)
    }

    /// See [`ConsoleInput::input_room`].
    pub fn input_room(&self) -> bool {
        self.input.input_room()
    }

    /// See [`ConsoleInput::input_ready_event`].
    pub fn input_ready_event(&self) -> &EventFd {
        self.input.input_ready_event()
    }

    /// The driver notified `receiveq0`: it posted receive buffers.
    fn receive_notified(&self) {
        let side = &self.input.side;
        let mut rx = side.lock();
        let Some(active) = rx.active.as_mut() else { return };
        let mem = &*active.mem;
        let queue = &mut active.queue;
        let result = if queue.event_idx_enabled() {
            queue.enable_notification(mem).map_err(|e| protocol("enabling notifications", e))
        } else {
            has_available(queue, mem)
        };
        match result {
            Ok(true) => side.signal_ready(),
            Ok(false) => {}
            Err(e) => {
                crate::guest_log!(static log::Level::Error, "virtio-console: {e}; console input stopped until the device is reset");
                rx.broken = Some(e.to_string());
            }
        }
    }

    /// A protocol violation found while pushing input and not reported yet.
    fn unreported_failure(&self) -> Option<String> {
        let mut rx = self.input.side.lock();
        if rx.reported {
            return None;
        }
        let msg = rx.broken.clone()?;
        rx.reported = true;
        Some(msg)
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioDevice<M> for Console<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    /// `struct virtio_console_config` (`cols`, `rows`, `max_nr_ports`,
    /// `emerg_wr`, 12 bytes) is all zeros: none of the features that give
    /// its fields meaning is offered.
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError> {
        let Activation { mem, queues, acked_features, interrupt } = activation;
        let mut queues = queues.into_iter();
        let rx_queue = prepare_queue(usize::from(RECEIVEQ), queues.next(), &*mem, acked_features)?;
        let tx_queue = prepare_queue(usize::from(TRANSMITQ), queues.next(), &*mem, acked_features)?;
        self.tx = Some(ActiveQueue { mem: mem.clone(), queue: tx_queue, interrupt: interrupt.clone() });
        let side = &self.input.side;
        let mut rx = side.lock();
        rx.clear();
        rx.active = Some(ActiveQueue { mem, queue: rx_queue, interrupt });
        drop(rx);
        // The driver may have posted receive buffers (and notified) before
        // DRIVER_OK; the VMM checks for room when woken.
        side.signal_ready();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        if self.tx.is_none() {
            log::debug!("virtio-console: notification before activation ignored");
            return Ok(());
        }
        match u16::try_from(index) {
            Ok(RECEIVEQ) => self.receive_notified(),
            Ok(TRANSMITQ) => {
                if let Some(tx) = self.tx.as_mut() {
                    let mem = &*tx.mem;
                    let max_descriptors = tx.queue.size();
                    let output = &mut self.output;
                    let mut budget = CONSOLE_TRANSMIT_BUDGET;
                    let result = drain_until(&mut tx.queue, mem, &*tx.interrupt, TRANSMITQ, |chain| {
                        Ok(match walk_chain(chain, max_descriptors) {
                            Ok(buffers) => output.emit(mem, &buffers, &mut budget),
                            Err(e) => {
                                log::debug!("virtio-console: {e}; transmit chain ignored");
                                output.resume = 0;
                                Handled::Used(0)
                            }
                        })
                    });
                    let flushed = output.sink.flush();
                    output.result(flushed);
                    self.tx_work_left = matches!(result, Ok(Drained::Stopped));
                    result?;
                }
            }
            _ => log::debug!("virtio-console: notification for nonexistent queue {index} ignored"),
        }
        match self.unreported_failure() {
            Some(msg) => Err(DeviceError::Queue(msg)),
            None => Ok(()),
        }
    }

    fn work_left(&self, index: usize) -> bool {
        index == usize::from(TRANSMITQ) && self.tx_work_left
    }

    fn reset(&mut self) {
        self.tx = None;
        self.tx_work_left = false;
        self.output.resume = 0;
        self.input.side.lock().clear();
    }
}

#[cfg(test)]
mod tests;
