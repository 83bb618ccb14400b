//! Building the arm64 VM from its config and running it until it stops.
//!
//! The machine: guest RAM from 1 GiB, vCPUs initialised with KVM's
//! preferred target and PSCI 0.2 (secondaries powered off until PSCI
//! CPU_ON), the in-kernel GICv3 and ITS, the architected timer (in KVM),
//! the 16550A console UART, the machine model's virtio devices on
//! virtio-mmio (SPIs by irqfd) and on PCI host bridges
//! (`pci-host-ecam-generic`, MSI-X through the ITS), all declared in the
//! device tree built from the same model. Power-off and reset come from
//! PSCI SYSTEM_OFF and SYSTEM_RESET as `KVM_EXIT_SYSTEM_EVENT` (handled by
//! the shared vCPU loop), so dmavm ends with status 0 or 3 as on x86_64.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use dmavm_devices::Bus;
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress};

use super::interrupts::GsiRouter;
use super::layout::{fdt_address, gic as gic_layout, MAX_MEMORY, MAX_VCPUS, UART, UART_SPI};
use super::{boot, gic, regs, uart};
use crate::config::{Boot, VmConfig};
use crate::control::socket_file::ControlSocket;
use crate::run_loop::{self, BuiltVm};
use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::{install_vcpu_kick_handler, TerminationSignals};
use crate::vcpu::VcpuShared;
use crate::{kvm, memory, virtio_devices};
use dmavm_machine::Placement;

/// `KVM_CREATE_VM` type 0: the default 40-bit IPA space, which the fdt
/// layout fits (Documentation/virt/kvm/api.rst, KVM_CREATE_VM on arm64).
const VM_TYPE_IPA_40: u64 = 0;

/// Runs the VM described by `config` until the guest stops, serving
/// `api` (the `--api-socket` listener) if given; returns why.
pub fn run(config: &VmConfig, api: Option<ControlSocket>) -> Result<ExitReason> {
    let Boot::Kernel { kernel, initrd, cmdline } = &config.boot else {
        bail!("--payload is x86_64 only (payloads are x86 machine code); boot an arm64 Image with --kernel");
    };
    if config.memory > MAX_MEMORY {
        bail!(
            "--memory {} MiB: the arm64 machine has room for at most {} MiB of RAM",
            config.memory >> 20,
            MAX_MEMORY >> 20
        );
    }
    let kvm = kvm::open(&config.kvm_device)?;
    let max = kvm::max_vcpus(&kvm).min(u32::try_from(MAX_VCPUS)?);
    config.check_cpus(max)?;
    check_capabilities(&kvm)?;
    let vm = Arc::new(kvm.create_vm_with_type(VM_TYPE_IPA_40).context("KVM_CREATE_VM failed")?);
    let mem = Arc::new(memory::create(config.memory, true)?);
    memory::register(&vm, &mem)?;

    let shutdown = Arc::new(Shutdown::new().context("cannot create the stop event")?);
    // Before any thread starts, so that all of them inherit the blocked mask.
    let signals = TerminationSignals::block_and_open()?;
    install_vcpu_kick_handler()?;

    // Every vCPU before the vGIC (its redistributors are per vCPU).
    let vcpus = create_vcpus(&vm, config.cpus)?;
    let mpidrs = vcpus.iter().map(regs::mpidr).collect::<Result<Vec<u64>>>()?;
    let _gic = gic::create(&vm, &gic_layout(vcpus.len()))?;

    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let router = Arc::new(GsiRouter::new(vm.clone(), super::interrupts::FIRST_MSI_GSI));
    let console = uart::console(&vm, &router, &mmio, UART, UART_SPI)?;
    route_mmio_devices(config, &router)?;
    let virtio = virtio_devices::create_with_pci(&vm, &mem, &mmio, &pio, &router, &config.machine)?;

    let fdt_addr =
        fdt_address(config.machine.boot_top()).context("guest memory too small for the device tree")?;
    let kernel = boot::load_kernel(kernel, &mem, fdt_addr)?;
    let initrd = initrd.as_deref().map(|p| boot::load_initrd(p, &mem, kernel.end, fdt_addr)).transpose()?;
    // The machine model's device tree (the one `dmavm describe` prints),
    // with the MPIDRs KVM gave the vCPUs.
    let mut description = config.machine.dt(&mpidrs, cmdline, initrd)?;
    if std::env::var_os(UNDECLARED_POOLS_FOR_TESTS).is_some_and(|v| v == "1") {
        undeclare_pools(&mut description);
    }
    flip_coherent(&mut description, config)?;
    let blob = dmavm_fdt::build(&description).context("building the device tree")?;
    mem.write_slice(&blob, GuestAddress(fdt_addr)).context("writing the device tree into guest memory")?;
    let boot_vcpu = vcpus.first().context("no vCPU")?;
    regs::set_boot_registers(boot_vcpu, kernel.entry, fdt_addr)?;
    log::info!(
        "arm64: kernel at {:#x}, initrd {:?}, device tree at {fdt_addr:#x} ({} bytes)",
        kernel.entry,
        initrd,
        blob.len()
    );

    let arch = super::vcpu_exits::ArchExitState;
    let vcpu_shared = Arc::new(VcpuShared { pio, mmio, arch, shutdown: shutdown.clone(), _memory: mem });
    let uart_input = (console.input(), console.drained_event()?);
    let built = BuiltVm {
        shutdown,
        signals,
        virtio,
        uart_input,
        vcpus,
        vcpu_shared,
        // Hot-plug is announced through ACPI, which this machine has not.
        hotplug: None,
    };
    run_loop::run(built, config, api)
}

/// Test only: with this environment variable set to `1`, the device tree
/// keeps every restricted DMA pool under `/reserved-memory` but names none
/// in a device's or bridge's `memory-region`, while the devices stay
/// confined to their pools. The guest then hands the devices buffers
/// anywhere in RAM, and dmavm refuses them: the real-guest test that proves
/// the confinement is enforced. Never for running a workload.
pub const UNDECLARED_POOLS_FOR_TESTS: &str = "DMAVM_TEST_UNDECLARED_POOLS";

/// Drops every `memory-region` reference from `description` (see
/// [`UNDECLARED_POOLS_FOR_TESTS`]).
fn undeclare_pools(description: &mut dmavm_fdt::Machine) {
    log::warn!(
        "{UNDECLARED_POOLS_FOR_TESTS}=1 (test only): the device tree names no restricted DMA pool on any device, \
         which stays confined to its pool: the guest's DMA to it will be refused"
    );
    for d in &mut description.virtio_mmio {
        d.dma_pool = None;
    }
    for root in &mut description.pci_roots {
        root.functions.clear();
    }
}

/// Test only (`--test-dt-flip-coherent`): the device tree declares each
/// named virtio-mmio device with the opposite of its coherency, the device
/// itself unchanged, so that a test can make the guest's DMA set-up
/// disagree with the machine and see the disagreement caught.
fn flip_coherent(description: &mut dmavm_fdt::Machine, config: &VmConfig) -> Result<()> {
    for id in &config.dt_flip_coherent {
        let Some(device) = config.machine.devices.iter().find(|d| d.id == *id) else {
            bail!("--test-dt-flip-coherent {id}: the machine has no device {id}");
        };
        let Placement::Mmio { window } = device.placement else {
            bail!("--test-dt-flip-coherent {id}: not a virtio-mmio device (a PCI device's coherency is its bridge's)");
        };
        let base = config.machine.mmio_window(window).map(|w| w.base);
        let Some(node) = description.virtio_mmio.iter_mut().find(|n| Some(n.region.base) == base) else {
            bail!("--test-dt-flip-coherent {id}: no virtio-mmio node of it in the device tree");
        };
        node.coherent = !node.coherent;
        log::warn!(
            "{id}: the device tree declares it {}coherent, which it is not (--test-dt-flip-coherent)",
            if node.coherent { "" } else { "non-" }
        );
    }
    Ok(())
}

/// What the arm64 back end needs from KVM beyond what every VM does.
fn check_capabilities(kvm: &Kvm) -> Result<()> {
    for (cap, name) in [
        (Cap::ArmPsci02, "KVM_CAP_ARM_PSCI_0_2"),
        (Cap::OneReg, "KVM_CAP_ONE_REG"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            bail!("this host's KVM lacks {name}, which dmavm needs");
        }
    }
    Ok(())
}

fn create_vcpus(vm: &VmFd, count: u32) -> Result<Vec<VcpuFd>> {
    let init = regs::preferred_init(vm)?;
    (0..count)
        .map(|id| {
            let vcpu = vm.create_vcpu(u64::from(id)).with_context(|| format!("cannot create vCPU {id}"))?;
            regs::init(&vcpu, id, &init)?;
            Ok(vcpu)
        })
        .collect()
}

/// Routes each virtio-mmio device's GSI to the SPI the device tree
/// declares for its window (the same number).
fn route_mmio_devices(config: &VmConfig, router: &GsiRouter) -> Result<()> {
    for d in &config.machine.devices {
        if let Placement::Mmio { window } = d.placement {
            let Some(w) = config.machine.mmio_window(window) else {
                bail!("{}: virtio-mmio window {window} has no place in the arm64 layout", d.id);
            };
            // The device model raises its window's interrupt number; on
            // arm64 that number is the SPI the device tree declares.
            super::interrupts::route_spi(router, w.interrupt, w.interrupt)?;
        }
    }
    Ok(())
}
