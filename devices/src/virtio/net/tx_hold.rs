//! Holding `transmitq1`'s notifications off for a moment after a transmit.
//!
//! Each notification is an exit of the guest's vCPU, the costliest step of
//! sending on a nested or trapping host. A device that turns notifications
//! back on as soon as it has drained the queue gets one for nearly every
//! frame of a stream, because the event loop usually empties the queue
//! before the guest's next frame is ready. So after a drain that sent
//! several frames (or any, if the last hold gathered frames),
//! notifications stay off and this timer fires after [`TX_HOLD`]: the
//! event loop then sends what the guest queued meanwhile (without an
//! exit), and holds again; the first check that finds nothing turns
//! notifications back on. An idle queue therefore notifies at once, and
//! a lone frame is never delayed; frames behind it in a burst wait at
//! most [`TX_HOLD`]. A guest that sends one frame per notification, long
//! apart (behind the IOMMU each frame waits for its MAP request), is not
//! held: it would pay a timer and a wake-up per frame for nothing.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

/// How long notifications stay off after a drain that sent frames. Long
/// enough for a guest streaming TCP to queue several frames (a 64 KiB
/// segment every ~2 ms at 30 MiB/s), short against its round trip and far
/// below what TCP small queues let it keep in flight, so neither latency
/// nor a window is felt.
pub const TX_HOLD: Duration = Duration::from_micros(200);

/// The hold's one-shot timer (`CLOCK_MONOTONIC`, non-blocking, so that
/// reading it after it was re-armed cannot block the event loop).
pub(crate) struct TxHold {
    timer: TimerFd,
}

impl TxHold {
    pub(crate) fn new() -> std::io::Result<Self> {
        // SAFETY: plain system call with constant arguments; its result is
        // checked before use.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a timerfd just created and owned by nothing else.
        let timer = unsafe { TimerFd::from_raw_fd(fd) };
        Ok(Self { timer })
    }

    /// Fires [`TX_HOLD`] from now (again, if it was armed).
    pub(crate) fn arm(&mut self) -> std::io::Result<()> {
        self.timer.reset(TX_HOLD, None).map_err(std::io::Error::from)
    }

    /// Clears an expiry the event loop was woken for, so that the
    /// level-triggered descriptor is quiet until the next one.
    pub(crate) fn acknowledge(&mut self) {
        // EAGAIN: no expiry pending (cleared or re-armed since): nothing to
        // clear.
        let _ = self.timer.wait();
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }
}
