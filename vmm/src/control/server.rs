//! The control socket on the main thread's event loop: accepts clients,
//! reads their request lines, answers each before reading the next.
//!
//! Everything a client can make dmavm hold is bounded: at most
//! [`MAX_CLIENTS`] connections, at most [`MAX_REQUEST`] bytes of a
//! request, and one reply at a time (a client that does not read its
//! replies is not read from). A request runs only once its whole line
//! arrived, so a client that leaves mid-request changes nothing.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use super::commands::{Answer, VmControl};
use super::protocol::{self, ErrorCode, Failure, MAX_REQUEST};

/// Clients served at once; one more is told so and disconnected. The
/// socket is its owner's only: this bounds a runaway script, not an
/// attacker.
pub const MAX_CLIENTS: usize = 16;

/// Bytes read from a client at a time.
const READ_CHUNK: usize = 4096;

/// How long `remove-device` waits for the guest to eject the device.
/// Linux's `acpiphp` ejects within milliseconds; a guest without it never
/// does, and the client hears so.
pub const EJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connected client.
struct Client {
    stream: UnixStream,
    /// Bytes of requests not yet answered: at most one line being
    /// completed, plus what arrived after lines not yet answered.
    input: Vec<u8>,
    /// The reply not yet written.
    output: Vec<u8>,
    /// Close once `output` is written (the request was too long to follow).
    closing: bool,
    /// The events it is watched for.
    watched: EventSet,
    /// Its removal waits for the guest: nothing more is read from it
    /// until that is answered.
    awaiting: bool,
}

/// A `remove-device` waiting for the guest's eject.
struct PendingRemoval {
    client: RawFd,
    id: String,
    deadline: Instant,
}

/// The control socket's event-loop subscriber.
pub struct ControlServer {
    listener: UnixListener,
    clients: HashMap<RawFd, Client>,
    vm: VmControl,
    pending: Vec<PendingRemoval>,
    /// Fires at the earliest deadline of `pending`.
    timer: Option<TimerFd>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer").field("clients", &self.clients.len()).finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Serves `vm` on `listener` (non-blocking, listening).
    pub fn new(listener: UnixListener, vm: VmControl) -> Self {
        // Created here, before the seccomp filter, which allows arming it
        // but not creating one. Without it a removal waits for the eject
        // alone.
        let timer = match TimerFd::new() {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("control socket: no eject timer ({e}); removals wait for the guest");
                None
            }
        };
        Self { listener, clients: HashMap::new(), vm, pending: Vec::new(), timer }
    }

    /// Answers the removals the guest's ejects completed.
    fn ejects_arrived(&mut self, ops: &mut EventOps) {
        for (id, reply) in self.vm.ejected() {
            if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                let pending = self.pending.remove(i);
                self.reply_later(pending.client, &reply, ops);
            }
        }
        self.arm_timer();
    }

    /// Answers the removals whose guest did not eject in time; the device
    /// stays (and leaves if the guest ejects it later).
    fn timer_fired(&mut self, ops: &mut EventOps) {
        if let Some(timer) = &mut self.timer {
            // Readable: the read does not block.
            let _ = timer.wait();
        }
        let now = Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.deadline <= now);
        self.pending = waiting;
        for p in expired {
            let reply = Err(Failure::new(
                ErrorCode::EjectTimeout,
                format!(
                    "{}: the guest did not eject it within {} s (is its ACPI PCI hot-plug driver, acpiphp, \
                     loaded?); it stays plugged in, and leaves if the guest ejects it later",
                    p.id,
                    EJECT_TIMEOUT.as_secs()
                ),
            ));
            self.reply_later(p.client, &reply, ops);
        }
        self.arm_timer();
    }

    fn arm_timer(&mut self) {
        let Some(timer) = &mut self.timer else { return };
        let result = match self.pending.iter().map(|p| p.deadline).min() {
            // A zero duration would disarm the timer.
            Some(at) => {
                timer.reset(at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)), None)
            }
            None => timer.clear(),
        };
        if let Err(e) = result {
            log::warn!("control socket: cannot arm the eject timer: {e}");
        }
    }

    /// Sends a reply that waited to its client (if it is still there) and
    /// reads from it again.
    fn reply_later(&mut self, fd: RawFd, reply: &Result<serde_json::Value, Failure>, ops: &mut EventOps) {
        let Some(client) = self.clients.get_mut(&fd) else { return };
        client.awaiting = false;
        client.output = protocol::encode_reply(reply);
        self.serve(fd, EventSet::OUT, ops);
    }

    fn accept(&mut self, ops: &mut EventOps) {
        loop {
            let stream = match accept(&self.listener) {
                Ok(stream) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it
                    // was accepted: the listener stays.
                    log::warn!("control socket: cannot accept a client: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                let reply = protocol::encode_reply(&Err(Failure::new(
                    ErrorCode::TooManyClients,
                    format!("{MAX_CLIENTS} clients are connected already; try again after one leaves"),
                )));
                // Best effort: the reply fits any socket buffer, and the
                // client is dropped either way.
                let _ = send(&stream, &reply);
                continue;
            }
            let fd = stream.as_raw_fd();
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::warn!("control socket: cannot watch a client: {e:?}");
                continue;
            }
            let client = Client {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                closing: false,
                watched: EventSet::IN,
                awaiting: false,
            };
            self.clients.insert(fd, client);
        }
    }

    fn drop_client(&mut self, fd: RawFd, ops: &mut EventOps) {
        // A removal it waited for goes on; nobody hears its end.
        self.pending.retain(|p| p.client != fd);
        if let Some(client) = self.clients.remove(&fd) {
            let _ = ops.remove(Events::new_raw(fd, client.watched));
        }
    }

    /// Reads what `fd`'s client sent, answers its complete requests, and
    /// writes the replies; drops it when it left or must go.
    fn serve(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps) {
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        if events.contains(EventSet::IN) && client.output.is_empty() && !client.closing && !client.awaiting {
            let mut buf = [0u8; READ_CHUNK];
            match recv(&client.stream, &mut buf) {
                // It left: an incomplete request is dropped unanswered.
                Ok(0) => return self.drop_client(fd, ops),
                Ok(n) => client.input.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => return self.drop_client(fd, ops),
            }
        } else if events.intersects(EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP)
            && !events.contains(EventSet::OUT)
        {
            return self.drop_client(fd, ops);
        }
        if !self.answer_and_write(fd) {
            return self.drop_client(fd, ops);
        }
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        // Read while there is no reply to write; write while there is.
        let wanted = if client.output.is_empty() { EventSet::IN } else { EventSet::OUT };
        if wanted != client.watched {
            if ops.modify(Events::new_raw(fd, wanted)).is_err() {
                return self.drop_client(fd, ops);
            }
            client.watched = wanted;
        }
    }

    /// Answers complete request lines one at a time, each reply written
    /// before the next request is read. False: the client must go (a write
    /// failed, or its too-long request was answered).
    fn answer_and_write(&mut self, fd: RawFd) -> bool {
        loop {
            let Some(client) = self.clients.get_mut(&fd) else {
                return false;
            };
            if !client.output.is_empty() {
                match send(&client.stream, &client.output) {
                    Ok(n) => {
                        client.output.drain(..n);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => return false,
                }
                if !client.output.is_empty() {
                    return true;
                }
            }
            if client.closing {
                return false;
            }
            if client.awaiting {
                return true;
            }
            let request = match client.input.iter().position(|&b| b == b'\n') {
                Some(end) if end <= MAX_REQUEST => {
                    let line: Vec<u8> = client.input.drain(..=end).take(end).collect();
                    line
                }
                Some(_) => {
                    client.closing = true;
                    client.output = too_long();
                    continue;
                }
                None if client.input.len() > MAX_REQUEST => {
                    client.closing = true;
                    client.output = too_long();
                    continue;
                }
                None => return true,
            };
            let answer = match protocol::parse(&request) {
                Ok(r) => self.vm.handle(r),
                Err(f) => Answer::Now(Err(f)),
            };
            let result = match answer {
                Answer::Now(result) => result,
                Answer::AfterEject(id) => {
                    self.pending.push(PendingRemoval {
                        client: fd,
                        id,
                        deadline: Instant::now() + EJECT_TIMEOUT,
                    });
                    self.arm_timer();
                    if let Some(client) = self.clients.get_mut(&fd) {
                        client.awaiting = true;
                    }
                    return true;
                }
            };
            if let Err(f) = &result {
                log::debug!("control socket: {}: {}", f.code.as_str(), f.message);
            }
            let reply = protocol::encode_reply(&result);
            if let Some(client) = self.clients.get_mut(&fd) {
                client.output = reply;
            }
        }
    }
}

/// accept4(2) of a non-blocking, close-on-exec client. std's `accept`
/// and `set_nonblocking` would need `ioctl(FIONBIO)`, which the main
/// thread's seccomp filter does not allow.
fn accept(listener: &UnixListener) -> std::io::Result<UnixStream> {
    // SAFETY: null address and length: the peer's address is not asked
    // for; the listener is an open socket.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// read(2) of what a client sent.
fn recv(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is writable memory of `buf.len()` bytes.
    let n = unsafe { libc::read(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// send(2) to a client, with `MSG_NOSIGNAL`: a client that left is an
/// `EPIPE` error, not a SIGPIPE.
fn send(stream: &UnixStream, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is readable memory of `buf.len()` bytes.
    let n = unsafe { libc::send(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

fn too_long() -> Vec<u8> {
    protocol::encode_reply(&Err(Failure::new(
        ErrorCode::RequestTooLong,
        format!("a request is one line of at most {MAX_REQUEST} bytes; closing the connection"),
    )))
}

impl MutEventSubscriber for ControlServer {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.listener.as_raw_fd() {
            self.accept(ops);
        } else if Some(events.fd()) == self.vm.eject_event() {
            self.ejects_arrived(ops);
        } else if Some(events.fd()) == self.timer.as_ref().map(AsRawFd::as_raw_fd) {
            self.timer_fired(ops);
        } else {
            self.serve(events.fd(), events.event_set(), ops);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.listener, EventSet::IN)) {
            log::error!("control socket: cannot watch the listener: {e:?}");
        }
        let others = [self.vm.eject_event(), self.timer.as_ref().map(AsRawFd::as_raw_fd)];
        for fd in others.into_iter().flatten() {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::error!("control socket: cannot watch the hot-plug events: {e:?}");
            }
        }
    }
}
