//! The terminal's input on its way to the guest: read from dmavm's stdin
//! with flow control, and handed to the console device that takes it (a
//! virtio console while the machine has one, the UART otherwise; a console
//! plugged in or out while the VM runs moves it).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::event_loop::{SubscriberChanges, SubscriberToken};

/// Something that takes host console input: the UART's receive FIFO or a
/// virtio console's receive queue.
pub trait InputSink: Send {
    /// Offers bytes; returns how many were taken (the rest is offered again
    /// after the device's "ready" event).
    fn push(&mut self, bytes: &[u8]) -> usize;
}

/// A console device's input side and the event it fires when it has room
/// for more.
pub type InputTarget = (Arc<Mutex<dyn InputSink>>, EventFd);

const STDIN: RawFd = libc::STDIN_FILENO;

/// Most bytes of host input held for a console device that has not taken
/// them: one read's worth. stdin is read only when nothing is pending, so
/// a guest that never drains its UART FIFO or never posts virtio-console
/// receive buffers leaves at most this much here; the rest waits in the
/// host's terminal or pipe, which has its own bound. 256 bytes is more than
/// a UART FIFO (16-64 bytes) and a line of typing, so reading in chunks of
/// it costs no extra wake-ups.
pub(crate) const MAX_PENDING_INPUT: usize = 256;

/// Which console device reads the terminal. Moving it replaces the
/// event-loop subscriber that reads stdin (between two rounds of the loop);
/// bytes read and not yet taken by the old device go to the new one, and a
/// stdin that ended stays ended.
pub struct TerminalInput {
    changes: SubscriberChanges,
    uart: InputTarget,
    reader: SubscriberToken,
    state: Arc<Mutex<ReaderState>>,
}

impl std::fmt::Debug for TerminalInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalInput").finish_non_exhaustive()
    }
}

impl TerminalInput {
    /// The terminal's input to `console` if the machine boots with a
    /// virtio console, else to the UART (`uart`), through the loop that
    /// `changes` reaches.
    pub fn new(changes: SubscriberChanges, uart: InputTarget, console: Option<InputTarget>) -> Result<Self> {
        let state = Arc::new(Mutex::new(ReaderState::default()));
        let (sink, ready) = match console {
            Some(console) => console,
            None => (uart.0.clone(), uart.1.try_clone().context("cannot clone the UART's input event")?),
        };
        let reader = changes.add(Arc::new(Mutex::new(StdinInput::new(STDIN, sink, ready, state.clone()))));
        Ok(Self { changes, uart, reader, state })
    }

    /// Gives the terminal's input to a virtio console plugged in.
    pub fn give_to_console(&mut self, console: InputTarget) {
        self.switch(console);
    }

    /// Gives the terminal's input back to the UART (the virtio console
    /// left).
    pub fn give_back_to_uart(&mut self) -> Result<()> {
        let ready = self.uart.1.try_clone().context("cannot clone the UART's input event")?;
        self.switch((self.uart.0.clone(), ready));
        Ok(())
    }

    fn switch(&mut self, (sink, ready): InputTarget) {
        self.changes.remove(self.reader);
        self.reader =
            self.changes.add(Arc::new(Mutex::new(StdinInput::new(STDIN, sink, ready, self.state.clone()))));
    }
}

/// What one reader of stdin leaves to the next.
#[derive(Default)]
struct ReaderState {
    /// Read from stdin, not yet taken by a device; at most
    /// [`MAX_PENDING_INPUT`] bytes.
    pending: Vec<u8>,
    /// stdin reached its end or failed: never watch it again.
    closed: bool,
}

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
    /// Shared with the reader before and after this one.
    state: Arc<Mutex<ReaderState>>,
    /// stdin is registered with the event loop by this reader.
    watching: bool,
}

impl StdinInput {
    fn new(
        input: RawFd,
        sink: Arc<Mutex<dyn InputSink>>,
        ready: EventFd,
        state: Arc<Mutex<ReaderState>>,
    ) -> Self {
        Self { input, sink, ready, state, watching: false }
    }

    fn state(&self) -> MutexGuard<'_, ReaderState> {
        // Plain bytes and a flag: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn watch(&mut self, ops: &mut EventOps, on: bool) {
        if on == self.watching || (on && self.state().closed) {
            return;
        }
        let event = Events::new_raw(self.input, EventSet::IN);
        let result = if on { ops.add(event) } else { ops.remove(event) };
        match result {
            Ok(()) => self.watching = on,
            // epoll refuses regular files and /dev/null: no console input.
            Err(e) => {
                log::debug!("stdin cannot be watched ({e:?}); no console input");
                self.state().closed = true;
            }
        }
    }

    fn close(&mut self, ops: &mut EventOps) {
        self.watch(ops, false);
        self.state().closed = true;
    }

    /// Offers the pending bytes; watches stdin only when all were taken.
    fn flush(&mut self, ops: &mut EventOps) {
        let room = {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !state.pending.is_empty() {
                let taken = match self.sink.lock() {
                    Ok(mut sink) => sink.push(&state.pending),
                    Err(_) => return,
                };
                log::trace!("console input: {} of {} pending bytes taken", taken, state.pending.len());
                let taken = taken.min(state.pending.len());
                state.pending.drain(..taken);
            }
            state.pending.is_empty()
        };
        self.watch(ops, room);
    }

    fn read(&mut self, ops: &mut EventOps) {
        if !self.state().pending.is_empty() {
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
                self.state().pending.extend_from_slice(&buf[..n]);
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
        // What the previous reader left pending goes first.
        self.flush(ops);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::{FromRawFd, OwnedFd};

    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use event_manager::{EventManager, SubscriberOps};

    use super::*;
    use crate::event_loop::Subscriber;

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
        let state = Arc::new(Mutex::new(ReaderState::default()));
        let input = Arc::new(Mutex::new(StdinInput::new(
            rx.as_raw_fd(),
            device.clone(),
            ready.try_clone().unwrap(),
            state,
        )));
        let mut manager = EventManager::<Subscriber>::new().unwrap();
        manager.add_subscriber(input.clone());
        for _ in 0..50 {
            manager.run_with_timeout(1).unwrap();
            // The guest keeps notifying (the ready event) without taking anything.
            ready.write(1).unwrap();
            let input = input.lock().unwrap();
            let pending = input.state().pending.len();
            assert!(pending <= MAX_PENDING_INPUT, "{pending} bytes pending");
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
        assert!(input.lock().unwrap().state().pending.is_empty());
    }

    /// The terminal moves from a device that took nothing (a UART whose
    /// FIFO is full) to another (a virtio console plugged in): the bytes
    /// read for the first arrive at the second, then the rest of stdin.
    #[test]
    fn moving_the_terminal_keeps_pending_input() {
        let (rx, tx) = pipe();
        let first = Arc::new(Mutex::new(Device::default()));
        let second = Arc::new(Mutex::new(Device { open: true, taken: Vec::new() }));
        let state = Arc::new(Mutex::new(ReaderState::default()));
        let ready = || EventFd::new(EFD_NONBLOCK).unwrap();
        let mut manager = EventManager::<Subscriber>::new().unwrap();
        let old = manager.add_subscriber(Arc::new(Mutex::new(StdinInput::new(
            rx.as_raw_fd(),
            first.clone(),
            ready(),
            state.clone(),
        ))));
        fill(&tx, b"typed before");
        manager.run_with_timeout(100).unwrap();
        assert_eq!(state.lock().unwrap().pending, b"typed before");
        manager.remove_subscriber(old).unwrap();
        manager.add_subscriber(Arc::new(Mutex::new(StdinInput::new(
            rx.as_raw_fd(),
            second.clone(),
            ready(),
            state,
        ))));
        assert_eq!(second.lock().unwrap().taken, b"typed before");
        fill(&tx, b", and after");
        manager.run_with_timeout(100).unwrap();
        assert_eq!(second.lock().unwrap().taken, b"typed before, and after");
        assert!(first.lock().unwrap().taken.is_empty());
    }
}
