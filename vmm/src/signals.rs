//! Process signals: termination requests reach the event loop through a
//! signalfd, and a real-time signal kicks vCPU threads out of `KVM_RUN`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// Signals that ask dmavm to stop the VM and exit (status 128 + signal).
const TERMINATION_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The signal sent to a vCPU thread to make `KVM_RUN` return `EINTR`.
pub fn vcpu_kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the kick handler. The handler does nothing: its only job is to
/// interrupt the `KVM_RUN` ioctl, after which the vCPU loop sees the stop
/// request.
pub fn install_vcpu_kick_handler() -> Result<()> {
    register_signal_handler(vcpu_kick_signal(), ignore_kick)
        .context("cannot install the vCPU kick signal handler")
}

/// A signalfd that becomes readable when a termination signal arrives.
#[derive(Debug)]
pub struct TerminationSignals {
    fd: OwnedFd,
}

impl TerminationSignals {
    /// Blocks the termination signals in this thread (threads spawned later
    /// inherit the mask, so no vCPU thread is interrupted by them) and opens
    /// a signalfd for them.
    pub fn block_and_open() -> Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it below
        // before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        for s in TERMINATION_SIGNALS {
            // SAFETY: `set` is a valid sigset_t and `s` a valid signal number.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        // SAFETY: `set` is initialised; the old mask is not requested.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc)).context("cannot block termination signals");
        }
        // SAFETY: -1 asks for a new fd; `set` is initialised; flags are valid.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot create a signalfd");
        }
        // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// The next pending termination signal, if any.
    pub fn read(&self) -> Option<libc::c_int> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is a writable buffer of exactly `size` bytes and the
        // fd is a valid signalfd.
        let n = unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size)
        };
        (usize::try_from(n).ok() == Some(size)).then_some(info.ssi_signo as libc::c_int)
    }
}

impl AsRawFd for TerminationSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
