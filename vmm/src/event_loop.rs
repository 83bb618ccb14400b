//! The main thread's event loop (event-manager): it waits for the stop
//! request, termination signals, host console input and the virtio
//! devices' queue notifications (their ioeventfds) while the vCPU threads
//! run the guest.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberId, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::TerminationSignals;

/// Something that takes host console input: the UART's receive FIFO or a
/// virtio console's receive queue.
pub trait InputSink: Send {
    /// Offers bytes; returns how many were taken (the rest is offered again
    /// after the device's "ready" event).
    fn push(&mut self, bytes: &[u8]) -> usize;
}

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Owns the event manager and the subscribers of the main thread.
pub struct EventLoop {
    manager: EventManager<Subscriber>,
    shutdown: Arc<Shutdown>,
    changes: SubscriberChanges,
    /// The manager's id of each subscriber added through `changes`.
    removable: HashMap<SubscriberToken, SubscriberId>,
}

/// Names a subscriber added through [`SubscriberChanges`], to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberToken(u64);

enum Change {
    Add(SubscriberToken, Subscriber),
    Remove(SubscriberToken),
}

/// Subscribers added and removed while the loop runs (devices plugged in
/// and out from a control-socket request, itself a subscriber): queued,
/// and applied by the loop between two rounds of events.
#[derive(Clone, Default)]
pub struct SubscriberChanges {
    queued: Arc<Queued>,
}

#[derive(Default)]
struct Queued {
    /// The last token handed out, and the changes not applied yet.
    changes: Mutex<(u64, Vec<Change>)>,
    /// Whether `changes` holds any: the loop checks this every round, and
    /// takes the lock only when there is something to apply.
    pending: AtomicBool,
}

impl std::fmt::Debug for SubscriberChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberChanges").finish_non_exhaustive()
    }
}

impl SubscriberChanges {
    /// Queues `subscriber` to be added; its token removes it.
    pub fn add(&self, subscriber: Subscriber) -> SubscriberToken {
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queued.0 += 1;
        let token = SubscriberToken(queued.0);
        queued.1.push(Change::Add(token, subscriber));
        self.queued.pending.store(true, Ordering::Release);
        token
    }

    /// Queues the removal of the subscriber `token` names.
    pub fn remove(&self, token: SubscriberToken) {
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queued.1.push(Change::Remove(token));
        self.queued.pending.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Change> {
        if !self.queued.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut queued.1)
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

impl EventLoop {
    /// An event loop that watches the stop request and termination signals.
    pub fn new(shutdown: Arc<Shutdown>, signals: TerminationSignals) -> Result<Self> {
        let mut manager = EventManager::<Subscriber>::new().context("cannot create the event loop")?;
        manager.add_subscriber(Arc::new(Mutex::new(StopWatcher { shutdown: shutdown.clone(), signals })));
        Ok(Self { manager, shutdown, changes: SubscriberChanges::default(), removable: HashMap::new() })
    }

    /// Where subscribers that may leave while the loop runs are added.
    pub fn changes(&self) -> SubscriberChanges {
        self.changes.clone()
    }

    fn apply_changes(&mut self) {
        for change in self.changes.take() {
            match change {
                Change::Add(token, subscriber) => {
                    let id = self.manager.add_subscriber(subscriber);
                    self.removable.insert(token, id);
                }
                Change::Remove(token) => {
                    let Some(id) = self.removable.remove(&token) else { continue };
                    // Dropped here, on this thread, with its descriptors
                    // out of the loop.
                    if let Err(e) = self.manager.remove_subscriber(id) {
                        log::warn!("cannot remove an event-loop subscriber: {e:?}");
                    }
                }
            }
        }
    }

    /// Feeds stdin to `sink`; while it cannot take more, stdin is not
    /// read, until `ready` fires.
    pub fn add_console_input(&mut self, sink: Arc<Mutex<dyn InputSink>>, ready: EventFd) {
        self.manager.add_subscriber(Arc::new(Mutex::new(StdinInput::new(STDIN, sink, ready))));
    }

    /// Adds a device's subscriber (queue notifications, ...).
    pub fn add_subscriber(&mut self, subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>>) {
        self.manager.add_subscriber(subscriber);
    }

    /// Runs until a stop is requested; returns why.
    pub fn run(&mut self) -> Result<ExitReason> {
        loop {
            self.apply_changes();
            if let Some(reason) = self.shutdown.reason() {
                return Ok(reason);
            }
            self.manager.run().context("event loop failed")?;
        }
    }
}

/// Wakes the loop on the stop event; turns termination signals into stop
/// requests.
struct StopWatcher {
    shutdown: Arc<Shutdown>,
    signals: TerminationSignals,
}

impl MutEventSubscriber for StopWatcher {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.signals.as_raw_fd() {
            while let Some(sig) = self.signals.read() {
                log::info!("received signal {sig}, stopping the VM");
                self.shutdown.request(ExitReason::Signal(sig));
            }
        } else {
            // The reason is read by `EventLoop::run`; only drain the counter.
            let _ = self.shutdown.event().read();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in [self.shutdown.event().as_raw_fd(), self.signals.as_raw_fd()] {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::error!("cannot watch fd {fd}: {e:?}");
            }
        }
    }
}

const STDIN: RawFd = libc::STDIN_FILENO;

/// Most bytes of host input held for a console device that has not taken
/// them: one read's worth. stdin is read only when nothing is pending, so
/// a guest that never drains its UART FIFO or never posts virtio-console
/// receive buffers leaves at most this much here; the rest waits in the
/// host's terminal or pipe, which has its own bound. 256 bytes is more than
/// a UART FIFO (16-64 bytes) and a line of typing, so reading in chunks of
/// it costs no extra wake-ups.
pub(crate) const MAX_PENDING_INPUT: usize = 256;

/// Reads `fd` without a user-space buffer. `std::io::stdin()` buffers: it
/// would swallow more than the UART can take, leave the rest where epoll
/// cannot see it, and stall input (a 201-byte paste stopped after 64).
fn read_fd(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid, writable memory of `buf.len()` bytes; a bad
    // `fd` only makes read(2) fail.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Copies stdin into the console device with flow control: bytes the device
/// cannot take yet stay pending and stdin is not watched (so the loop does
/// not spin and nothing is lost) until the device's ready event says it
/// has room again.
struct StdinInput {
    /// stdin (another descriptor in tests).
    input: RawFd,
    sink: Arc<Mutex<dyn InputSink>>,
    ready: EventFd,
    /// Read from `input`, not yet taken by the device; at most
    /// [`MAX_PENDING_INPUT`] bytes.
    pending: Vec<u8>,
    /// stdin is registered with the event loop.
    watching: bool,
    /// stdin reached its end or failed: never watch it again.
    closed: bool,
}

impl StdinInput {
    fn new(input: RawFd, sink: Arc<Mutex<dyn InputSink>>, ready: EventFd) -> Self {
        Self { input, sink, ready, pending: Vec::new(), watching: false, closed: false }
    }

    fn watch(&mut self, ops: &mut EventOps, on: bool) {
        if on == self.watching || (on && self.closed) {
            return;
        }
        let event = Events::new_raw(self.input, EventSet::IN);
        let result = if on { ops.add(event) } else { ops.remove(event) };
        match result {
            Ok(()) => self.watching = on,
            // epoll refuses regular files and /dev/null: no console input.
            Err(e) => {
                log::debug!("stdin cannot be watched ({e:?}); no console input");
                self.closed = true;
            }
        }
    }

    fn close(&mut self, ops: &mut EventOps) {
        self.watch(ops, false);
        self.closed = true;
    }

    /// Offers the pending bytes; watches stdin only when all were taken.
    fn flush(&mut self, ops: &mut EventOps) {
        if !self.pending.is_empty() {
            let taken = match self.sink.lock() {
                Ok(mut sink) => sink.push(&self.pending),
                Err(_) => return,
            };
            log::trace!("console input: {} of {} pending bytes taken", taken, self.pending.len());
            self.pending.drain(..taken.min(self.pending.len()));
        }
        let room = self.pending.is_empty();
        self.watch(ops, room);
    }

    fn read(&mut self, ops: &mut EventOps) {
        if !self.pending.is_empty() {
            // stdin is watched only while nothing is pending, unless it
            // could not be unwatched: offer the pending bytes instead of
            // reading more, so that `pending` stays bounded.
            self.flush(ops);
            return;
        }
        let mut buf = [0u8; MAX_PENDING_INPUT];
        match read_fd(self.input, &mut buf) {
            Ok(0) => self.close(ops),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.flush(ops);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("stdin: {e}; console input disabled");
                self.close(ops);
            }
        }
    }
}

impl MutEventSubscriber for StdinInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.ready.as_raw_fd() {
            let _ = self.ready.read();
            self.flush(ops);
        } else if events.event_set().contains(EventSet::IN) {
            self.read(ops);
        } else {
            // Hang-up or error without data.
            self.close(ops);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.ready, EventSet::IN)) {
            log::warn!("console flow control unavailable: {e:?}");
        }
        self.watch(ops, true);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::{FromRawFd, OwnedFd};

    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use super::*;

    /// A console device that takes input only when told to.
    #[derive(Default)]
    struct Device {
        open: bool,
        taken: Vec<u8>,
    }

    impl InputSink for Device {
        fn push(&mut self, bytes: &[u8]) -> usize {
            if !self.open {
                return 0;
            }
            self.taken.extend_from_slice(bytes);
            bytes.len()
        }
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2(2) returns.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 succeeded: both are open descriptors owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Writes as much of `data` as the pipe takes; returns how much.
    fn fill(fd: &OwnedFd, data: &[u8]) -> usize {
        // SAFETY: `data` is valid memory of `data.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        usize::try_from(n).unwrap()
    }

    /// A guest that never takes console input (no receive buffers, a full
    /// UART FIFO) while the host keeps typing: dmavm holds at most
    /// `MAX_PENDING_INPUT` bytes and stops reading; once the device has
    /// room, every byte arrives, in order.
    #[test]
    fn pending_console_input_is_bounded() {
        let (rx, tx) = pipe();
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let sent = fill(&tx, &data);
        assert!(sent > 16 * MAX_PENDING_INPUT, "pipe took {sent} bytes");
        let device = Arc::new(Mutex::new(Device::default()));
        let ready = EventFd::new(EFD_NONBLOCK).unwrap();
        let input =
            Arc::new(Mutex::new(StdinInput::new(rx.as_raw_fd(), device.clone(), ready.try_clone().unwrap())));
        let mut manager = EventManager::<Subscriber>::new().unwrap();
        manager.add_subscriber(input.clone());
        for _ in 0..50 {
            manager.run_with_timeout(1).unwrap();
            // The guest keeps notifying (the ready event) without taking anything.
            ready.write(1).unwrap();
            let input = input.lock().unwrap();
            assert!(input.pending.len() <= MAX_PENDING_INPUT, "{} bytes pending", input.pending.len());
            assert!(!input.watching, "stdin still read while input is pending");
        }
        assert!(device.lock().unwrap().taken.is_empty());
        device.lock().unwrap().open = true;
        ready.write(1).unwrap();
        for _ in 0..(sent / MAX_PENDING_INPUT) * 2 + 10 {
            if device.lock().unwrap().taken.len() == sent {
                break;
            }
            manager.run_with_timeout(10).unwrap();
        }
        assert_eq!(device.lock().unwrap().taken, data[..sent]);
        assert!(input.lock().unwrap().pending.is_empty());
    }
}
