//! Building the VM from its config and running it until it stops.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use dmavm_devices::ioapic::{Ioapic, IoapicSink};
use dmavm_devices::legacy::{
    ExitPort, PowerRegisters, PowerRequest, EXIT_PORT_ADDR, POWER_PORT_BASE, POWER_PORT_LEN,
};
use dmavm_devices::Bus;
use kvm_bindings::{
    kvm_enable_cap, kvm_mp_state, KVM_CAP_SPLIT_IRQCHIP, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use super::boot::{self, LinuxBoot};
use super::entry::{self, EntryState};
use super::interrupts::{GsiRouter, KvmMsi, IOAPIC_PINS};
use super::layout::{IOAPIC_ADDR, IOAPIC_SIZE, KVM_TSS_ADDR};
use super::{cpuid, firmware, lapic, msrs, payload, uart, xsave_probe};
use crate::config::{Boot, VmConfig};
use crate::control::socket_file::ControlSocket;
use crate::hotplug::{self, HotplugParts};
use crate::run_loop::{self, BuiltVm};
use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::{install_vcpu_kick_handler, TerminationSignals};
use crate::vcpu::VcpuShared;
use crate::{acpi_dump, kvm, memory, virtio_devices};

/// Runs the VM described by `config` until the guest stops, serving
/// `api` (the `--api-socket` listener) if given; returns why.
pub fn run(config: &VmConfig, api: Option<ControlSocket>) -> Result<ExitReason> {
    let kvm = kvm::open(&config.kvm_device)?;
    config.check_cpus(kvm::max_vcpus(&kvm))?;
    let vm = Arc::new(create_vm(&kvm)?);
    let mem = Arc::new(memory::create(config.memory, matches!(config.boot, Boot::Kernel { .. }))?);
    memory::register(&vm, &mem)?;

    let shutdown = Arc::new(Shutdown::new().context("cannot create the stop event")?);
    // Before any thread starts, so that all of them inherit the blocked mask.
    let signals = TerminationSignals::block_and_open()?;
    install_vcpu_kick_handler()?;

    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let router = Arc::new(GsiRouter::new(vm.clone(), super::interrupts::FIRST_MSI_GSI));
    let msi = Arc::new(KvmMsi::new(vm.clone(), router.clone()));
    let ioapic = Ioapic::new(msi.clone());
    // KVM must know the (still masked) pins' routes from the start.
    msi.routes_changed(&ioapic.routes().collect::<Vec<_>>());
    let ioapic = Arc::new(Mutex::new(ioapic));
    mmio.insert(ioapic.clone(), IOAPIC_ADDR, IOAPIC_SIZE).context("placing the IOAPIC")?;

    let console = uart::console(&ioapic, &pio)?;
    let exit_shutdown = shutdown.clone();
    let exit_port = ExitPort::new(move |status| exit_shutdown.request(ExitReason::GuestStatus(status)));
    pio.insert(Arc::new(Mutex::new(exit_port)), EXIT_PORT_ADDR, 1).context("placing the exit port")?;
    let power_shutdown = shutdown.clone();
    let power = PowerRegisters::new(move |request| {
        power_shutdown.request(match request {
            PowerRequest::PowerOff => ExitReason::PowerOff,
            PowerRequest::Reset => ExitReason::Reset,
        })
    });
    pio.insert(Arc::new(Mutex::new(power)), POWER_PORT_BASE, POWER_PORT_LEN)
        .context("placing the power registers")?;

    let virtio = virtio_devices::create_with_pci(&vm, &mem, &mmio, &pio, &router, &config.machine)?;
    // The power button and the slots of hotplug=on bridges, which the
    // firmware tables declare on every machine.
    let (controller, ejects) = hotplug::create_controller(&vm, &mmio, &config.machine)?;
    let hotplug = HotplugParts {
        vm: vm.clone(),
        mem: mem.clone(),
        mmio: mmio.clone(),
        router: router.clone(),
        controller,
        ejects,
    };
    let tables = firmware::install(&mem, &config.machine)?;
    if let Some(dir) = &config.dump_acpi {
        acpi_dump::write(&tables, dir)?;
    }
    entry::write_boot_tables(&mem)?;
    let start = match &config.boot {
        Boot::Payload(path) => Start::Payload(payload::load(path, &mem, config.memory)?),
        Boot::Kernel { kernel, initrd, cmdline } => {
            let ecam: Vec<(u64, u64)> = config
                .machine
                .pci_segments()?
                .into_iter()
                .map(|(_, w)| (w.ecam.start, w.ecam.end - w.ecam.start))
                .collect();
            let linux = LinuxBoot {
                kernel,
                initrd: initrd.as_deref(),
                cmdline,
                memory: config.memory,
                rsdp: tables.rsdp_addr,
                reserved: &ecam,
            };
            Start::Linux(boot::load(&linux, &mem)?)
        }
    };

    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let vcpus = create_vcpus(&kvm, &vm, config.cpus, start, tsc_deadline)?;

    let arch = super::vcpu_exits::ArchExitState { ioapic };
    let vcpu_shared = Arc::new(VcpuShared { pio, mmio, arch, shutdown: shutdown.clone(), _memory: mem });
    let uart_input = (console.input(), console.drained_event()?);
    let built = BuiltVm { shutdown, signals, virtio, uart_input, vcpus, vcpu_shared, hotplug: Some(hotplug) };
    run_loop::run(built, config, api)
}

/// Creates the VM: split irqchip (local APICs in KVM, IOAPIC in dmavm, no
/// in-kernel PIT or PIC), as measured in TESTBED.md this avoids the 8-32 ms
/// teardown cost of the in-kernel PIT and the slow memory registration of
/// the full in-kernel irqchip.
fn create_vm(kvm: &Kvm) -> Result<VmFd> {
    for (cap, name) in [
        (Cap::SplitIrqchip, "KVM_CAP_SPLIT_IRQCHIP"),
        (Cap::SignalMsi, "KVM_CAP_SIGNAL_MSI"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            bail!("this host's KVM lacks {name}, which dmavm needs");
        }
    }
    let vm = kvm.create_vm().context("KVM_CREATE_VM failed")?;
    let cap =
        kvm_enable_cap { cap: KVM_CAP_SPLIT_IRQCHIP, args: [IOAPIC_PINS, 0, 0, 0], ..Default::default() };
    vm.enable_cap(&cap).context("cannot enable KVM's split irqchip")?;
    let tss = usize::try_from(KVM_TSS_ADDR).context("TSS address")?;
    vm.set_tss_address(tss).context("KVM_SET_TSS_ADDR failed")?;
    Ok(vm)
}

/// What the vCPUs start.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// A payload's entry address, on every vCPU.
    Payload(u64),
    /// Linux's entry on the boot vCPU; the others wait for INIT/SIPI.
    Linux(boot::Entry),
}

fn create_vcpus(kvm: &Kvm, vm: &VmFd, count: u32, start: Start, tsc_deadline: bool) -> Result<Vec<VcpuFd>> {
    let mut supported =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).context("KVM_GET_SUPPORTED_CPUID failed")?;
    if matches!(start, Start::Linux(_)) && !xsave_probe::kvm_sees_guest_xsetbv(kvm, &supported)? {
        log::info!("KVM does not see the guest's XSETBV on this host (nested emulation?): hiding XSAVE");
        xsave_probe::hide_xsave(&mut supported);
    }
    (0..count)
        .map(|id| {
            let vcpu = vm.create_vcpu(u64::from(id)).with_context(|| format!("cannot create vCPU {id}"))?;
            let ids = cpuid::for_vcpu(&supported, cpuid::Topology { apic_id: id, cpus: count, tsc_deadline });
            vcpu.set_cpuid2(&ids).with_context(|| format!("cannot set the CPUID of vCPU {id}"))?;
            msrs::setup(&vcpu).with_context(|| format!("cannot set the MSRs of vCPU {id}"))?;
            lapic::setup(&vcpu).with_context(|| format!("cannot set up the local APIC of vCPU {id}"))?;
            match start {
                Start::Payload(entry) => start_payload(&vcpu, id, count, entry)?,
                Start::Linux(boot::Entry::Long64 { rip, rsi }) if id == 0 => {
                    entry::enter_long_mode(&vcpu, EntryState { rip, rsi, ..Default::default() })?
                }
                Start::Linux(boot::Entry::Pvh32 { rip, ebx }) if id == 0 => {
                    entry::enter_pvh(&vcpu, rip, ebx)?
                }
                Start::Linux(_) => {}
            }
            Ok(vcpu)
        })
        .collect()
}

fn start_payload(vcpu: &VcpuFd, id: u32, count: u32, entry: u64) -> Result<()> {
    // With the local APICs in KVM, application processors wait for
    // INIT/SIPI; a payload starts them all at once instead. This must come
    // before the register state: measured on PVM, an AP made runnable after
    // KVM_SET_SREGS/REGS never runs.
    vcpu.set_mp_state(kvm_mp_state { mp_state: KVM_MP_STATE_RUNNABLE })
        .with_context(|| format!("cannot make vCPU {id} runnable"))?;
    entry::enter_long_mode(vcpu, payload::entry_state(entry, id, count))
        .with_context(|| format!("cannot set up vCPU {id}"))
}
