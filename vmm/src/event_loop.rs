//! The main thread's event loop (event-manager): it waits for the stop
//! request, termination signals, host console input and the virtio
//! devices' queue notifications (their ioeventfds) while the vCPU threads
//! run the guest.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
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
        Ok(Self { manager, shutdown })
    }

    /// Feeds stdin to `sink`; while it cannot take more, stdin is not
    /// read, until `ready` fires.
    pub fn add_console_input(&mut self, sink: Arc<Mutex<dyn InputSink>>, ready: EventFd) {
        self.manager.add_subscriber(Arc::new(Mutex::new(StdinInput {
            sink,
            ready,
            pending: Vec::new(),
            watching: false,
            closed: false,
        })));
    }

    /// Adds a device's subscriber (queue notifications, ...).
    pub fn add_subscriber(&mut self, subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>>) {
        self.manager.add_subscriber(subscriber);
    }

    /// Runs until a stop is requested; returns why.
    pub fn run(&mut self) -> Result<ExitReason> {
        loop {
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

const STDIN: i32 = libc::STDIN_FILENO;

/// Reads stdin without a user-space buffer. `std::io::stdin()` buffers: it
/// would swallow more than the UART can take, leave the rest where epoll
/// cannot see it, and stall input (a 201-byte paste stopped after 64).
fn read_stdin(buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid, writable memory of `buf.len()` bytes.
    let n = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Copies stdin into the console device with flow control: bytes the device
/// cannot take yet stay pending and stdin is not watched (so the loop does
/// not spin and nothing is lost) until the device's ready event says it
/// has room again.
struct StdinInput {
    sink: Arc<Mutex<dyn InputSink>>,
    ready: EventFd,
    /// Read from stdin, not yet taken by the device.
    pending: Vec<u8>,
    /// stdin is registered with the event loop.
    watching: bool,
    /// stdin reached its end or failed: never watch it again.
    closed: bool,
}

impl StdinInput {
    fn watch(&mut self, ops: &mut EventOps, on: bool) {
        if on == self.watching || (on && self.closed) {
            return;
        }
        let event = Events::new_raw(STDIN, EventSet::IN);
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
        let mut buf = [0u8; 256];
        match read_stdin(&mut buf) {
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
