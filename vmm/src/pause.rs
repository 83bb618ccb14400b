//! Pausing the vCPUs: each vCPU thread passes the gate before every
//! `KVM_RUN` and waits there while the VM is paused; the pauser kicks the
//! threads out of the guest and waits until every one is at the gate, so
//! that "paused" means no guest instruction runs.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use crate::signals::vcpu_kick_signal;

/// How often a parked vCPU looks at the stop request: a stop kicks vCPUs
/// with a signal, which does not end a wait on a condition variable.
const PARKED_POLL: Duration = Duration::from_millis(20);

/// How long [`PauseGate::pause`] waits for every vCPU to leave the guest.
/// A vCPU in `KVM_RUN` leaves it on the kick signal within microseconds;
/// one busy in a device model's exit handler takes as long as that.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct GateState {
    paused: bool,
    /// vCPU threads waiting at the gate.
    parked: usize,
    /// The kernel thread IDs of the vCPU threads, to kick.
    vcpus: Vec<libc::pid_t>,
}

/// The gate every vCPU thread passes before entering the guest.
#[derive(Debug, Default)]
pub struct PauseGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

/// The VM did not pause in time.
#[derive(Debug, thiserror::Error)]
#[error("{parked} of {total} vCPUs left the guest within {PAUSE_TIMEOUT:?}; the VM stays running")]
pub struct PauseTimeout {
    parked: usize,
    total: usize,
}

impl PauseGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The calling vCPU thread, to be kicked by [`pause`](Self::pause).
    pub fn register_this_vcpu(&self) {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        if let Ok(tid) = libc::pid_t::try_from(tid) {
            self.lock().vcpus.push(tid);
        }
    }

    /// vCPU side: returns at once unless the VM is paused; else waits until
    /// it is resumed or a stop is requested.
    pub fn pass(&self, shutdown: &Shutdown) {
        let mut state = self.lock();
        if !state.paused {
            return;
        }
        state.parked += 1;
        self.changed.notify_all();
        while state.paused && !shutdown.is_requested() {
            state = match self.changed.wait_timeout(state, PARKED_POLL) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        state.parked -= 1;
        self.changed.notify_all();
    }

    /// Whether the VM is paused.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Stops every vCPU at its gate and returns once all are there; if
    /// they are not within [`PAUSE_TIMEOUT`], resumes them and fails.
    pub fn pause(&self) -> Result<(), PauseTimeout> {
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        let mut state = self.lock();
        state.paused = true;
        loop {
            if state.parked >= state.vcpus.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let error = PauseTimeout { parked: state.parked, total: state.vcpus.len() };
                state.paused = false;
                self.changed.notify_all();
                return Err(error);
            }
            // A kick that lands before a thread enters KVM_RUN is lost:
            // kick again until each is parked.
            for &tid in &state.vcpus {
                kick(tid);
            }
            state = match self.changed.wait_timeout(state, Duration::from_millis(1)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Lets the vCPUs enter the guest again.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.changed.notify_all();
    }
}

/// Interrupts thread `tid` of this process with the vCPU kick signal,
/// whose handler does nothing: `KVM_RUN` returns `EINTR`. A thread that
/// has ended is not there to kick (`ESRCH`).
fn kick(tid: libc::pid_t) {
    // SAFETY: tgkill(2) sends a signal whose handler is installed and
    // does nothing; it touches no memory of ours.
    unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, vcpu_kick_signal());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    /// Threads standing for vCPUs pass the gate in a loop; a pause returns
    /// only once every one of them waits at it, and a resume lets them go.
    #[test]
    fn pause_waits_for_every_vcpu_and_resume_releases_them() {
        crate::signals::install_vcpu_kick_handler().unwrap();
        let gate = Arc::new(PauseGate::default());
        let shutdown = Arc::new(Shutdown::new().unwrap());
        let passes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (gate, shutdown, passes) = (gate.clone(), shutdown.clone(), passes.clone());
                std::thread::spawn(move || {
                    gate.register_this_vcpu();
                    while !shutdown.is_requested() {
                        gate.pass(&shutdown);
                        passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(50));
                    }
                })
            })
            .collect();
        while gate.lock().vcpus.len() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        gate.pause().unwrap();
        assert!(gate.is_paused());
        let frozen = passes.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(passes.load(std::sync::atomic::Ordering::Relaxed), frozen, "a vCPU ran while paused");
        gate.resume();
        let deadline = Instant::now() + Duration::from_secs(5);
        while passes.load(std::sync::atomic::Ordering::Relaxed) == frozen {
            assert!(Instant::now() < deadline, "no vCPU ran after resume");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A stop ends the wait of paused vCPUs.
        gate.pause().unwrap();
        shutdown.request(crate::shutdown::ExitReason::PowerOff);
        for t in threads {
            t.join().unwrap();
        }
    }
}
