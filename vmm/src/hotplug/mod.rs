//! PCI devices plugged into and out of the running VM, on `hotplug=on`
//! bridges: the device built as at boot and put on its root bus, the guest
//! told through the hot-plug controller; on the way out, the guest asked
//! to eject it, and once it did, everything of the device withdrawn (its
//! BARs and queue notifications, its interrupts, its event-loop handler,
//! its IOMMU endpoint's domain, mappings and cached translations).

mod controller;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::hotplug_events::HotplugEvents;
use dmavm_devices::Bus;
use dmavm_iommu::IommuHandle;
use dmavm_machine::{Device, DeviceKind, DmaPath, Machine, Placement};
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

#[cfg(target_arch = "x86_64")]
pub use controller::create as create_controller;
pub use controller::Ejects;

use crate::arch::interrupts::{GsiRouter, IrqfdMsix};
use crate::console_input::TerminalInput;
use crate::event_loop::{SubscriberChanges, SubscriberToken};
use crate::pci::PciSegment;
use crate::virtio_devices::{self, HotAdded, Placed, RemovableDevice, VirtioDevices, Wiring};
use crate::vtd_units::VtdUnits;

/// What the architecture's VM builder keeps for hot-plug: what building a
/// device at run time needs besides the devices built at boot, and the
/// controller.
pub struct HotplugParts {
    /// The VM, for ioeventfds, irqfds and MSI routes.
    pub vm: Arc<VmFd>,
    /// Guest memory.
    pub mem: Arc<GuestMemoryMmap>,
    /// The MMIO bus the roots map BARs on.
    pub mmio: Arc<Bus>,
    /// MSI routes.
    pub router: Arc<GsiRouter>,
    /// The controller's registers.
    pub controller: Arc<Mutex<HotplugEvents>>,
    /// The slots the guest ejects.
    pub ejects: Arc<Ejects>,
}

impl std::fmt::Debug for HotplugParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotplugParts").finish_non_exhaustive()
    }
}

/// What building a device at run time needs, kept from boot.
struct HotplugWiring {
    vm: Arc<VmFd>,
    mem: Arc<GuestMemoryMmap>,
    mmio: Arc<Bus>,
    pci: Vec<PciSegment>,
    router: Arc<GsiRouter>,
    iommu: Option<IommuHandle>,
    vtd: VtdUnits,
}

/// A device on a `hotplug=on` bridge, as the VMM holds it.
struct Plugged {
    segment: u16,
    slot: u8,
    queues: SubscriberToken,
    msix: Option<Arc<IrqfdMsix>>,
    endpoint: Option<u32>,
    /// The virtio console, which reads the terminal while it is plugged in.
    console: bool,
}

/// The running VM's hot-plug side.
pub struct Hotplug {
    wiring: HotplugWiring,
    controller: Arc<Mutex<HotplugEvents>>,
    ejects: Arc<Ejects>,
    subscribers: SubscriberChanges,
    plugged: HashMap<String, Plugged>,
    terminal: TerminalInput,
}

impl std::fmt::Debug for Hotplug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hotplug")
            .field("plugged", &self.plugged.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Hotplug {
    /// The hot-plug side of a VM: `parts` from its builder, the PCI
    /// segments, IOMMUs and removable devices of `virtio` (whose queue
    /// handlers go to the event loop through `subscribers`), and the
    /// terminal's input, which a console plugged in or out takes or gives
    /// back.
    pub fn new(
        parts: HotplugParts,
        virtio: &mut VirtioDevices,
        subscribers: SubscriberChanges,
        machine: &Machine,
        terminal: TerminalInput,
    ) -> Self {
        let HotplugParts { vm, mem, mmio, router, controller, ejects } = parts;
        let wiring = HotplugWiring {
            vm,
            mem,
            mmio,
            router,
            pci: std::mem::take(&mut virtio.pci),
            iommu: virtio.iommu.clone(),
            vtd: virtio.vtd.clone(),
        };
        let mut hotplug = Self { wiring, controller, ejects, subscribers, plugged: HashMap::new(), terminal };
        for RemovableDevice { id, placed } in std::mem::take(&mut virtio.removable) {
            if let Some(device) = machine.devices.iter().find(|d| d.id == id) {
                hotplug.adopt(device, placed);
            }
        }
        hotplug
    }

    fn adopt(&mut self, device: &Device, placed: Placed) {
        let Placement::Pci { segment, slot } = device.placement else { return };
        let queues = self.subscribers.add(placed.queues);
        let endpoint = match device.dma {
            DmaPath::Translated { endpoint } => Some(endpoint),
            _ => None,
        };
        let console = device.kind == DeviceKind::Console;
        self.plugged.insert(
            device.id.clone(),
            Plugged { segment, slot, queues, msix: placed.msix, endpoint, console },
        );
    }

    /// The guest's ejects, to watch.
    pub fn ejects(&self) -> &Arc<Ejects> {
        &self.ejects
    }

    /// Presses the power button.
    pub fn press_power_button(&self) -> Result<()> {
        lock(&self.controller)?.press_power_button();
        Ok(())
    }

    /// Builds `device` (placed by `machine.hot_add`, `machine` being the
    /// model with it) on its root bus and tells the guest it arrived.
    pub fn plug(&mut self, machine: &Machine, device: &Device) -> Result<()> {
        let Placement::Pci { segment, slot } = device.placement else {
            anyhow::bail!("{}: only PCI devices are plugged in", device.id)
        };
        let w = &self.wiring;
        let wiring =
            Wiring { vm: &w.vm, mem: &w.mem, mmio: &w.mmio, pci: &w.pci, router: &w.router, machine };
        let HotAdded { placed, console_input } =
            virtio_devices::hot_add(machine, device, &wiring, w.iommu.as_ref(), &w.vtd)?;
        self.adopt(device, placed);
        if let Some(input) = console_input {
            self.terminal.give_to_console(input);
        }
        let announced = lock(&self.controller)?.device_added(segment, slot);
        if let Err(e) = announced {
            // Not announced: nothing of it may stay.
            self.withdraw(&device.id)?;
            return Err(e).with_context(|| format!("{}: announcing the device", device.id));
        }
        Ok(())
    }

    /// Whether `id` can be asked to leave: a disk, rng or console on a
    /// `hotplug=on` bridge that has not left yet.
    pub fn is_plugged(&self, id: &str) -> bool {
        self.plugged.contains_key(id)
    }

    /// Asks the guest to eject device `id`; it stays until the guest does.
    pub fn request_removal(&mut self, id: &str) -> Result<()> {
        let plugged = self.plugged.get(id).with_context(|| format!("{id}: not a hot-pluggable device"))?;
        lock(&self.controller)?.request_removal(plugged.segment, plugged.slot)?;
        Ok(())
    }

    /// The device at `segment`/`slot`, which the guest ejected: its id.
    pub fn device_at(&self, segment: u16, slot: u8) -> Option<String> {
        self.plugged.iter().find(|(_, p)| p.segment == segment && p.slot == slot).map(|(id, _)| id.clone())
    }

    /// Withdraws everything of device `id` (the guest ejected it, or it was
    /// never announced).
    pub fn withdraw(&mut self, id: &str) -> Result<()> {
        let plugged = self.plugged.remove(id).with_context(|| format!("{id}: not plugged in"))?;
        let segment = self
            .wiring
            .pci
            .iter()
            .find(|s| s.segment == plugged.segment)
            .with_context(|| format!("{id}: no PCI segment {}", plugged.segment))?;
        // BARs off the bus first: the queue notifications leave KVM with
        // them, and no vCPU reaches the device any more.
        lock(&segment.root)?
            .remove_device(plugged.slot)
            .with_context(|| format!("{id}: unplugging it from its root bus"))?;
        segment.notify.forget(plugged.slot);
        self.subscribers.remove(plugged.queues);
        if let Some(msix) = &plugged.msix {
            msix.release(&self.wiring.vm).with_context(|| format!("{id}: withdrawing its interrupts"))?;
        }
        if let (Some(endpoint), Some(iommu)) = (plugged.endpoint, &self.wiring.iommu) {
            iommu.endpoint_removed(endpoint);
        }
        if plugged.console {
            self.terminal
                .give_back_to_uart()
                .with_context(|| format!("{id}: giving the terminal back to the UART"))?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| anyhow::anyhow!("a hot-plug structure is unusable after a panic"))
}
