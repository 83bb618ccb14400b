//! vCPU threads: run `KVM_RUN` and dispatch each exit.
//!
//! A vCPU stops when a stop is requested (by itself, another vCPU, a device
//! or the main loop). Everything the guest does (an access to an unmapped
//! address, an odd access size) is handled or reported without stopping the
//! VMM; only states the guest cannot recover from (triple fault, KVM
//! internal error, failed VM entry) end the VM, with a message saying which.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmavm_devices::Bus;
use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::Killable;

use crate::arch::vcpu_exits;
use crate::pause::PauseGate;
use crate::seccomp::{Filters, Thread};
use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::vcpu_kick_signal;

/// What every vCPU thread shares.
#[derive(Debug)]
pub struct VcpuShared {
    /// Port-I/O devices.
    pub pio: Arc<Bus>,
    /// MMIO devices.
    pub mmio: Arc<Bus>,
    /// What the architecture's own exits need.
    pub arch: vcpu_exits::ArchExitState,
    /// The stop request.
    pub shutdown: Arc<Shutdown>,
    /// Guest RAM, never read here: held so that it stays mapped while any
    /// vCPU thread (even one that failed to stop) can still enter the
    /// guest. Devices that run on a vCPU thread read guest memory through
    /// their own handle.
    pub _memory: Arc<GuestMemoryMmap>,
}

/// How many unhandled MMIO accesses are logged as warnings before the rest
/// go to the debug level, so a guest that scans the hole cannot flood the
/// log.
const MMIO_WARN_LIMIT: u32 = 16;
static MMIO_WARNINGS: AtomicU32 = AtomicU32::new(0);

fn report_unhandled_mmio(id: u32, kind: &str, addr: u64, len: usize) {
    let n = MMIO_WARNINGS.fetch_add(1, Ordering::Relaxed);
    if n < MMIO_WARN_LIMIT {
        log::warn!("vCPU {id}: unhandled MMIO {kind} of {len} bytes at {addr:#x} (no device there; ignored)");
        if n + 1 == MMIO_WARN_LIMIT {
            log::warn!("further unhandled MMIO accesses are logged at debug level only");
        }
    } else {
        log::debug!("vCPU {id}: unhandled MMIO {kind} of {len} bytes at {addr:#x}");
    }
}

/// Starts vCPU `id`'s thread.
/// The thread filters itself with `filters` before it first enters the
/// guest, and waits at `pause` before every entry while the VM is paused.
pub fn spawn(
    id: u32,
    vcpu: VcpuFd,
    shared: Arc<VcpuShared>,
    filters: Arc<Filters>,
    pause: Arc<PauseGate>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            pause.register_this_vcpu();
            if let Err(e) = filters.install(Thread::Vcpu(id)) {
                shared.shutdown.request(ExitReason::Crash(format!("{e:#}")));
                return;
            }
            run(id, vcpu, &shared, &pause)
        })
        .with_context(|| format!("cannot start the thread of vCPU {id}"))
}

fn run(id: u32, mut vcpu: VcpuFd, shared: &VcpuShared, pause: &PauseGate) {
    while !shared.shutdown.is_requested() {
        pause.pass(&shared.shutdown);
        if shared.shutdown.is_requested() {
            break;
        }
        let outcome = match vcpu.run() {
            Ok(exit) => handle_exit(id, exit, shared),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                Ok(())
            }
            Err(e) => Err(format!("vCPU {id}: KVM_RUN failed: {e}")),
        };
        if let Err(message) = outcome {
            vcpu_exits::dump_registers(id, &vcpu);
            shared.shutdown.request(ExitReason::Crash(message));
        }
    }
}

fn handle_exit(id: u32, exit: VcpuExit<'_>, shared: &VcpuShared) -> Result<(), String> {
    match exit {
        VcpuExit::IoOut(port, data) => {
            if let Err(e) = shared.pio.write(u64::from(port), data) {
                log::debug!("vCPU {id}: port write: {e}");
            }
        }
        VcpuExit::IoIn(port, data) => {
            if let Err(e) = shared.pio.read(u64::from(port), data) {
                log::debug!("vCPU {id}: port read: {e}");
                // An empty ISA bus floats high.
                data.fill(0xff);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            if shared.mmio.write(addr, data).is_err() {
                report_unhandled_mmio(id, "write", addr, data.len());
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            if shared.mmio.read(addr, data).is_err() {
                report_unhandled_mmio(id, "read", addr, data.len());
                data.fill(0xff);
            }
        }
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => shared.shutdown.request(ExitReason::PowerOff),
            KVM_SYSTEM_EVENT_RESET => shared.shutdown.request(ExitReason::Reset),
            KVM_SYSTEM_EVENT_CRASH => return Err(format!("vCPU {id}: the guest reported a crash")),
            other => log::warn!("vCPU {id}: ignoring KVM system event {other}"),
        },
        VcpuExit::Intr => {}
        VcpuExit::Shutdown => {
            return Err(format!("vCPU {id}: the guest triple-faulted (KVM shutdown exit)"));
        }
        VcpuExit::InternalError => return Err(format!("vCPU {id}: KVM internal error")),
        VcpuExit::FailEntry(reason, cpu) => {
            return Err(format!(
                "vCPU {id}: KVM could not enter the guest (hardware reason {reason:#x} on host CPU {cpu})"
            ));
        }
        other => return vcpu_exits::handle(id, other, &shared.arch),
    }
    Ok(())
}

/// How long the vCPU threads get to notice a stop before dmavm exits
/// without them.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes every vCPU thread leave `KVM_RUN` and waits for them (bounded by
/// [`STOP_TIMEOUT`]). After an arm64 PSCI SYSTEM_OFF, KVM has already
/// stopped every vCPU.
pub fn stop_all(shutdown: &Shutdown, threads: Vec<JoinHandle<()>>) {
    // A vCPU may be stopping on its own already; the others sit in KVM_RUN
    // (or in a halted state inside it) until a signal interrupts the ioctl.
    // A kick that lands just before a thread enters KVM_RUN is lost, so keep
    // kicking until each thread is gone.
    if shutdown.reason().is_none() {
        shutdown.request(ExitReason::Crash("the event loop ended unexpectedly".into()));
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut pending = threads;
    while !pending.is_empty() {
        pending.retain(|t| !t.is_finished());
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            log::warn!("{} vCPU thread(s) did not stop; exiting without them", pending.len());
            // The threads keep the shared state (and guest memory) alive.
            return;
        }
        for t in &pending {
            // ESRCH when the thread has just exited: nothing to do.
            let _ = t.kill(vcpu_kick_signal());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
