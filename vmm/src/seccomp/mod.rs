//! Seccomp: each thread of `dmavm run` limits itself to the system calls
//! its work needs before it touches anything the guest controls, so that a
//! thread a hostile guest subverts (a device model bug) cannot open files,
//! sockets or processes, map executable memory, or issue KVM ioctls beyond
//! its own.
//!
//! Two kinds of thread exist: the vCPU threads ([`vcpu`]), which run
//! `KVM_RUN` and handle the exits inline, and the main thread
//! ([`main_thread`]), which runs the event loop (virtio queues, disk I/O,
//! console input, signals) and finally stops the VM. Both share the calls
//! of [`common`]. Filters are built for the architecture dmavm is compiled
//! for (`libc::SYS_*` are that architecture's numbers; the filter also
//! checks the audit architecture).
//!
//! A forbidden call raises SIGSYS ([`violation`]), whose handler prints one
//! line naming the call and the thread and ends dmavm. `--seccomp log`
//! lets every call through and has the kernel log the ones outside the
//! allow-list (audit type 1326, in `dmesg` or the audit log).

mod common;
mod ioctls;
pub mod main_thread;
mod names;
mod rules;
pub mod vcpu;
mod violation;

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use anyhow::{Context, Result};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// What `--seccomp` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Filter every thread; a forbidden system call stops dmavm with one
    /// line naming the call and the thread (exit status 159, 128 + SIGSYS).
    On,
    /// Filter every thread, but let forbidden calls through and have the
    /// kernel log them (audit type 1326 in dmesg or the audit log): for
    /// finding what a filter lacks.
    Log,
    /// Install no filter.
    Off,
}

/// Which thread a filter is for; also what a violation report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    /// vCPU `n`'s thread.
    Vcpu(u32),
    /// The main thread: the event loop and the VM's stop.
    Main,
}

impl std::fmt::Display for Thread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Thread::Vcpu(id) => write!(f, "vCPU {id}"),
            Thread::Main => f.write_str("main (event loop)"),
        }
    }
}

/// The compiled filters of one run, or none with `--seccomp off`.
#[derive(Debug, Clone)]
pub struct Filters {
    mode: Mode,
    vcpu: BpfProgram,
    main: BpfProgram,
}

impl Filters {
    /// Compiles both filters for `mode` and, for `on`, installs the SIGSYS
    /// handler that reports a violation. `hotplug` and `socket_dir` widen
    /// the main thread's list (see [`main_thread::rules`]).
    pub fn build(mode: Mode, hotplug: bool, socket_dir: Option<RawFd>) -> Result<Self> {
        let (vcpu, main) = match mode {
            Mode::Off => (BpfProgram::new(), BpfProgram::new()),
            Mode::On | Mode::Log => (
                compile(vcpu::rules()?, mode).context("vCPU")?,
                compile(main_thread::rules(hotplug, socket_dir)?, mode).context("main thread")?,
            ),
        };
        if mode == Mode::On {
            violation::install_handler()?;
        }
        Ok(Self { mode, vcpu, main })
    }

    /// Installs `thread`'s filter on the calling thread (nothing with
    /// `--seccomp off`). Threads this one creates afterwards inherit it.
    pub fn install(&self, thread: Thread) -> Result<()> {
        let program = match thread {
            Thread::Vcpu(_) => &self.vcpu,
            Thread::Main => &self.main,
        };
        if self.mode == Mode::Off {
            log::info!("seccomp: off, no filter on the {thread} thread");
            return Ok(());
        }
        violation::name_this_thread(thread);
        seccompiler::apply_filter(program)
            .with_context(|| format!("cannot install the seccomp filter of the {thread} thread"))?;
        let action = match self.mode {
            Mode::On => "a forbidden call stops dmavm",
            _ => "forbidden calls are logged by the kernel and allowed",
        };
        log::info!("seccomp: {thread} thread filtered ({} instructions; {action})", program.len());
        Ok(())
    }
}

/// The architecture dmavm runs on, as seccompiler names it.
fn target_arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| anyhow::anyhow!("seccomp filters cannot be built for {}: {e}", std::env::consts::ARCH))
}

/// Compiles an allow-list: a listed call whose rules match (or that has
/// none) runs, anything else gets `mode`'s action.
fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, mode: Mode) -> Result<BpfProgram> {
    let mismatch = match mode {
        Mode::Log => SeccompAction::Log,
        _ => SeccompAction::Trap,
    };
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, target_arch()?)
        .context("invalid seccomp filter")?;
    BpfProgram::try_from(filter).context("cannot compile the seccomp filter")
}

#[cfg(test)]
mod tests;
