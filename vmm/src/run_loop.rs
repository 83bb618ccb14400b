//! The part of running a VM that both architectures share, once each back
//! end (`arch::vm`) has built its VM: the event loop with the virtio
//! queues and the terminal's input, the vCPU threads, the stop, and the
//! `--stats` report.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use dmavm_machine::Machine;
use kvm_ioctls::VcpuFd;
use vmm_sys_util::eventfd::EventFd;

use crate::event_loop::{EventLoop, InputSink};
use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::TerminationSignals;
use crate::terminal::RawModeGuard;
use crate::vcpu::{self, VcpuShared};
use crate::{stats, virtio_devices};

/// A built VM, ready to run.
pub struct BuiltVm {
    /// The stop request every part of the VM can make.
    pub shutdown: Arc<Shutdown>,
    /// SIGTERM/SIGINT/SIGHUP, blocked on every thread and read here.
    pub signals: TerminationSignals,
    /// The virtio devices' queue handlers, console input and IOMMU.
    pub virtio: virtio_devices::VirtioDevices,
    /// The console UART's input side and its "drained" event, which take
    /// the terminal's input when there is no virtio console.
    pub uart_input: (Arc<Mutex<dyn InputSink>>, EventFd),
    /// The vCPUs, the boot vCPU first, their state set.
    pub vcpus: Vec<VcpuFd>,
    /// What the vCPU threads dispatch exits to.
    pub vcpu_shared: Arc<VcpuShared>,
}

impl std::fmt::Debug for BuiltVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltVm").field("vcpus", &self.vcpus.len()).finish_non_exhaustive()
    }
}

/// Runs `vm` until the guest stops or a signal ends it; prints the IOMMU
/// counters of `machine`'s endpoints when `stats`; returns why it stopped.
pub fn run(vm: BuiltVm, machine: &Machine, stats: bool) -> Result<ExitReason> {
    let BuiltVm { shutdown, signals, virtio, uart_input, vcpus, vcpu_shared } = vm;
    // Every descriptor of the VM exists by now.
    crate::hygiene::close_on_exec_all()?;
    let mut events = EventLoop::new(shutdown.clone(), signals)?;
    for subscriber in virtio.queues {
        events.add_subscriber(subscriber);
    }
    // The terminal's input goes to the virtio console when there is one
    // (the user boots with console=hvc0), else to the UART. Also when stdin
    // is a pipe (scripts driving a guest shell); /dev/null and regular
    // files are refused by epoll and simply give no input.
    let _raw_terminal = RawModeGuard::enter();
    let (input, ready) = virtio.console_input.unwrap_or(uart_input);
    events.add_console_input(input, ready);

    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, fd) in vcpus.into_iter().enumerate() {
        let id = u32::try_from(id)?;
        match vcpu::spawn(id, fd, vcpu_shared.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                shutdown.request(ExitReason::Crash(format!("{e:#}")));
                break;
            }
        }
    }
    let reason = events.run();
    vcpu::stop_all(&shutdown, threads);
    if stats {
        stats::print_iommu_stats(machine, virtio.iommu.as_ref(), &virtio.vtd);
    }
    reason
}
