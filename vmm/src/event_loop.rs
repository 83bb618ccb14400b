//! The main thread's event loop (event-manager): it waits for the stop
//! request, termination signals and host console input while the vCPU
//! threads run the guest. Later, ioeventfd- and irqfd-driven devices
//! register here too.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::TerminationSignals;

/// Something that takes host console input (the UART's receive FIFO).
pub trait ConsoleInput: Send {
    /// Bytes the device can take now.
    fn capacity(&self) -> usize;
    /// Offers bytes; returns how many were taken.
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

    /// Feeds stdin to `console`, pausing while its buffer is full until
    /// `drained` fires.
    pub fn add_console_input(&mut self, console: Arc<Mutex<dyn ConsoleInput>>, drained: EventFd) {
        self.manager.add_subscriber(Arc::new(Mutex::new(StdinInput {
            console,
            drained,
            paused: false,
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

/// Copies stdin into the console device with flow control: while the device
/// is full, stdin is not watched (so the loop does not spin) and the
/// device's "drained" event re-enables it.
struct StdinInput {
    console: Arc<Mutex<dyn ConsoleInput>>,
    drained: EventFd,
    /// stdin is not being watched right now.
    paused: bool,
    /// stdin reached its end or failed: never watch it again.
    closed: bool,
}

impl StdinInput {
    fn close(&mut self, ops: &mut EventOps) {
        if !self.paused {
            let _ = ops.remove(Events::new_raw(STDIN, EventSet::IN));
        }
        self.paused = true;
        self.closed = true;
    }

    fn pump(&mut self, ops: &mut EventOps) {
        let Ok(mut console) = self.console.lock() else {
            return;
        };
        let room = console.capacity();
        if room == 0 {
            if !self.paused && ops.remove(Events::new_raw(STDIN, EventSet::IN)).is_ok() {
                self.paused = true;
            }
            return;
        }
        let mut buf = [0u8; 64];
        let want = room.min(buf.len());
        match read_stdin(&mut buf[..want]) {
            Ok(0) => {
                drop(console);
                self.close(ops);
            }
            Ok(n) => {
                console.push(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("stdin: {e}; console input disabled");
                drop(console);
                self.close(ops);
            }
        }
    }
}

impl MutEventSubscriber for StdinInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
            if self.paused && !self.closed && ops.add(Events::new_raw(STDIN, EventSet::IN)).is_ok() {
                self.paused = false;
            }
        } else if events.event_set().intersects(EventSet::HANG_UP | EventSet::ERROR)
            && !events.event_set().contains(EventSet::IN)
        {
            self.close(ops);
        } else {
            self.pump(ops);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.drained, EventSet::IN)) {
            log::warn!("console flow control unavailable: {e:?}");
        }
        // epoll refuses regular files (stdin redirected from a file): then
        // the guest simply gets no console input.
        if let Err(e) = ops.add(Events::new_raw(STDIN, EventSet::IN)) {
            log::debug!("stdin cannot be watched ({e:?}); no console input");
            self.paused = true;
            self.closed = true;
        }
    }
}
