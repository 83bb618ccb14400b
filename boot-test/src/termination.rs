//! Ctrl-C (SIGINT), SIGTERM and SIGHUP for the harness. The harness's
//! children (`dmavm run` VMs, QEMU, scripts) must not outlive it, so a
//! termination signal only sets a flag: the run loops poll it, kill and
//! reap their children and return, and the temporary folder's drop
//! removes what they left. (The VM runner's own signal handling, a
//! signalfd and the vCPU kick, is another concern: vmm/src/signals.rs.)

use std::sync::atomic::{AtomicI32, Ordering};

use vmm_sys_util::signal::register_signal_handler;

use crate::error::Error;

/// The termination signal that arrived, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The harness was interrupted by this signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted(pub i32);

extern "C" fn on_signal(signal: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // An atomic store is async-signal-safe.
    INTERRUPTED.store(signal, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the flag instead of killing the
/// harness.
pub fn catch_termination() -> Result<(), Error> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        register_signal_handler(signal, on_signal).map_err(|source| Error::CatchSignal { signal, source })?;
    }
    Ok(())
}

/// The termination signal that arrived, if any.
pub fn interrupted() -> Option<Interrupted> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(Interrupted(s)),
    }
}
