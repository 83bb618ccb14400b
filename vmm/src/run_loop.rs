//! The part of running a VM that both architectures share, once each back
//! end (`arch::vm`) has built its VM: the event loop with the virtio
//! queues and the terminal's input, the vCPU threads, the stop, and the
//! `--stats` report.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use kvm_ioctls::VcpuFd;

use crate::config::{Boot, VmConfig};
use crate::console_input::{InputTarget, TerminalInput};
use crate::control::commands::VmControl;
use crate::control::server::ControlServer;
use crate::control::socket_file::ControlSocket;
use crate::event_loop::EventLoop;
use crate::hotplug::{Hotplug, HotplugParts};
use crate::pause::PauseGate;
use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::TerminationSignals;
use crate::terminal::RawModeGuard;
use crate::vcpu::{self, VcpuShared};
use crate::{seccomp, stats, virtio_devices};

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
    pub uart_input: InputTarget,
    /// The vCPUs, the boot vCPU first, their state set.
    pub vcpus: Vec<VcpuFd>,
    /// What the vCPU threads dispatch exits to.
    pub vcpu_shared: Arc<VcpuShared>,
    /// The hot-plug controller and what plugging devices in needs (the
    /// x86_64 machine's).
    pub hotplug: Option<HotplugParts>,
}

impl std::fmt::Debug for BuiltVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltVm").field("vcpus", &self.vcpus.len()).finish_non_exhaustive()
    }
}

/// Runs `vm` until the guest stops or a signal ends it, every thread under
/// `config`'s seccomp filter, serving the control socket on `api` if
/// given; prints the IOMMU counters of the machine's endpoints when
/// `config` asks for `--stats`; returns why it stopped.
pub fn run(vm: BuiltVm, config: &VmConfig, api: Option<ControlSocket>) -> Result<ExitReason> {
    let BuiltVm { shutdown, signals, mut virtio, uart_input, vcpus, vcpu_shared, hotplug } = vm;
    // Every descriptor of the VM exists by now.
    crate::hygiene::close_on_exec_all()?;
    let mut events = EventLoop::new(shutdown.clone(), signals)?;
    for subscriber in std::mem::take(&mut virtio.queues) {
        events.add_subscriber(subscriber);
    }
    // The terminal's input goes to the virtio console when there is one
    // (the user boots with console=hvc0), else to the UART. Also when stdin
    // is a pipe (scripts driving a guest shell); /dev/null and regular
    // files are refused by epoll and simply give no input.
    let terminal = TerminalInput::new(events.changes(), uart_input, virtio.console_input.take())?;
    // Devices come and go only through the control socket.
    let (hotplug, _terminal) = match (hotplug, &api) {
        (Some(parts), Some(_)) => {
            (Some(Hotplug::new(parts, &mut virtio, events.changes(), &config.machine, terminal)), None)
        }
        _ => (None, Some(terminal)),
    };
    for removable in std::mem::take(&mut virtio.removable) {
        events.add_subscriber(removable.placed.queues);
    }
    let takes_devices = hotplug.is_some() && config.machine.bridges.iter().any(|b| b.hotplug);
    let (listener, socket_file) = match api {
        Some(ControlSocket { listener, file }) => (Some(listener), Some(file)),
        None => (None, None),
    };
    let filters = Arc::new(seccomp::Filters::build(
        config.seccomp,
        takes_devices,
        socket_file.as_ref().map(|f| f.dir_fd()),
    )?);
    let _raw_terminal = RawModeGuard::enter();
    let pause = Arc::new(PauseGate::default());
    if let Some(listener) = listener {
        let control = VmControl {
            machine: config.machine.clone(),
            cmdline: match &config.boot {
                Boot::Kernel { cmdline, .. } => cmdline.clone(),
                Boot::Payload(_) => String::new(),
            },
            initrd_size: match &config.boot {
                Boot::Kernel { initrd: Some(path), .. } => std::fs::metadata(path).ok().map(|m| m.len()),
                _ => None,
            },
            iommu: virtio.iommu.clone(),
            shutdown: shutdown.clone(),
            pause: pause.clone(),
            hotplug,
        };
        events.add_subscriber(Arc::new(Mutex::new(ControlServer::new(listener, control))));
    }

    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, fd) in vcpus.into_iter().enumerate() {
        let id = u32::try_from(id)?;
        match vcpu::spawn(id, fd, vcpu_shared.clone(), filters.clone(), pause.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                shutdown.request(ExitReason::Crash(format!("{e:#}")));
                break;
            }
        }
    }
    // After the vCPU threads exist, which would otherwise inherit this
    // filter on top of their own; before the first event.
    let reason = match filters.install(seccomp::Thread::Main) {
        Ok(()) => events.run(),
        Err(e) => {
            shutdown.request(ExitReason::Crash(format!("{e:#}")));
            Err(e)
        }
    };
    vcpu::stop_all(&shutdown, threads);
    if let Some(file) = &socket_file {
        if let Err(e) = file.remove() {
            log::warn!("cannot remove the control socket's file: {e}");
        }
    }
    if config.stats {
        stats::print_iommu_stats(&config.machine, virtio.iommu.as_ref(), &virtio.vtd);
        stats::print_pool_stats(&config.machine, &virtio.pools);
        stats::print_net_stats(&virtio.net);
    }
    reason
}
