//! Why the VM stopped, and the exit status dmavm reports for it (the
//! statuses are listed in [`crate::exit_status`]).
//!
//! The first reason recorded wins: a vCPU that faults after another vCPU
//! asked for power-off does not change the outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::exit_status;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote this status to the exit port. Only the x86_64
    /// machine has one (an ISA port, `arch/x86_64/vm.rs`); an arm64 guest
    /// can only power off or reset.
    #[cfg(target_arch = "x86_64")]
    GuestStatus(u8),
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset.
    Reset,
    /// The guest or a vCPU failed; the message says how.
    Crash(String),
    /// dmavm received a termination signal.
    Signal(i32),
    /// A client of the control socket asked to end the VM (`quit`).
    Quit,
}

impl ExitReason {
    /// The process exit status for this reason.
    pub fn exit_status(&self) -> u8 {
        match self {
            #[cfg(target_arch = "x86_64")]
            ExitReason::GuestStatus(s) => *s,
            ExitReason::PowerOff | ExitReason::Quit => 0,
            ExitReason::Reset => exit_status::RESET,
            ExitReason::Crash(_) => exit_status::ERROR,
            ExitReason::Signal(s) => exit_status::signalled(*s),
        }
    }
}

/// The shared stop request: vCPU threads and devices record a reason, the
/// main loop wakes up on the event and tears the VM down.
#[derive(Debug)]
pub struct Shutdown {
    requested: AtomicBool,
    reason: Mutex<Option<ExitReason>>,
    event: EventFd,
}

impl Shutdown {
    /// A stop request not yet made.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            requested: AtomicBool::new(false),
            reason: Mutex::new(None),
            event: EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
        })
    }

    /// Records `reason` unless one was recorded already, and wakes the main
    /// loop.
    pub fn request(&self, reason: ExitReason) {
        let mut slot = match self.reason.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if slot.is_none() {
            log::debug!("stop requested: {reason:?}");
            *slot = Some(reason);
        }
        drop(slot);
        self.requested.store(true, Ordering::Release);
        if let Err(e) = self.event.write(1) {
            log::error!("cannot wake the main loop: {e}");
        }
    }

    /// Whether a stop was requested (cheap: checked before every `KVM_RUN`).
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The recorded reason, if any.
    pub fn reason(&self) -> Option<ExitReason> {
        match self.reason.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Readable once a stop was requested.
    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The guest status is the one reason that carries a value of its own.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn first_reason_wins() {
        let s = Shutdown::new().unwrap();
        assert_eq!(s.reason(), None);
        s.request(ExitReason::GuestStatus(7));
        s.request(ExitReason::Crash("late".into()));
        assert_eq!(s.reason(), Some(ExitReason::GuestStatus(7)));
        assert_eq!(s.event().read().unwrap(), 2);
    }

    #[test]
    fn statuses() {
        assert_eq!(ExitReason::PowerOff.exit_status(), 0);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(ExitReason::GuestStatus(7).exit_status(), 7);
        assert_eq!(ExitReason::Reset.exit_status(), 3);
        assert_eq!(ExitReason::Crash(String::new()).exit_status(), 1);
        assert_eq!(ExitReason::Signal(15).exit_status(), 143);
    }
}
