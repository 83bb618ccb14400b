//! PCI hot-plug in the machine model: where a device added to a running
//! machine goes and how it reaches guest memory, by the same rules as a
//! device given at boot, and which devices may leave.
//!
//! Only a `hotplug=on` host bridge takes or gives up devices at run time:
//! its IOMMU scope was declared whole at boot (every slot translated, or
//! every slot outside the scope), so a device arriving in any of its slots
//! is already described truthfully. A device that would break the DMA
//! contract there is refused with the coded finding `run` gives
//! ([`crate::checks`]).

use dmavm_acpi::HotplugController;

use crate::arch::Arch;
use crate::bridge::{self, PciBridge};
use crate::checks;
use crate::device_types::DeviceKind;
use crate::dma::DmaPath;
use crate::endpoint_id::{pci_bdf, pci_endpoint};
use crate::layout::x86_64::{HOTPLUG_GSI, HOTPLUG_REGISTERS_START};
use crate::options::{DeviceOptions, Transport};
use crate::placement::{Device, Machine, Placement, FIRST_PCI_SLOT, LAST_PCI_SLOT};

/// Why a device cannot be added to or removed from a running machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotplugError {
    /// The request names what does not exist (a bridge, a device) or a
    /// place that cannot take the device (a full bridge, a taken slot, a
    /// name in use).
    #[error("{0}")]
    Placement(String),
    /// The device is not on a `hotplug=on` bridge (or is the IOMMU).
    #[error("{0}")]
    NotHotpluggable(String),
    /// The machine with the device would break the DMA contract: the
    /// refusal line of [`checks::refusal`], its code first.
    #[error("{0}")]
    Refused(String),
}

/// A device the machine can take at run time, and the machine with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotAdd {
    /// The device, placed, with its DMA path.
    pub device: Device,
    /// The machine with the device added (the model the running VM
    /// describes from then on).
    pub machine: Machine,
}

impl Machine {
    /// The x86_64 machine's hot-plug controller: a power button on every
    /// machine (so the guest can be asked to shut down) and the slots of
    /// every `hotplug=on` bridge.
    pub fn hotplug_controller(&self) -> HotplugController {
        HotplugController {
            base: HOTPLUG_REGISTERS_START,
            gsi: HOTPLUG_GSI,
            power_button: true,
            segments: self.bridges.iter().filter(|b| b.hotplug).map(|b| b.segment).collect(),
        }
    }

    /// The endpoints of the empty slots of translated `hotplug=on` bridges
    /// (slots 1-31 but the occupied ones), each with its bridge's
    /// coherency: a device plugged in later lands in one of them, so the
    /// IOMMU knows them from boot, as the firmware tables declared them.
    pub fn hotplug_endpoints(&self) -> Vec<(u32, bool)> {
        self.bridges
            .iter()
            .filter(|b| b.hotplug && !b.direct_ram_access)
            .flat_map(|b| (FIRST_PCI_SLOT..=LAST_PCI_SLOT).map(move |slot| (b, slot)))
            .filter(|(b, slot)| !self.slot_taken(b, *slot))
            .map(|(b, slot)| (pci_endpoint(b.segment, pci_bdf(slot)), b.coherent))
            .collect()
    }

    /// Places `options` on its `hotplug=on` bridge as a boot-time device
    /// would be placed (named `<kind><n>` unless it has an id, the first
    /// free slot unless it asks for one, the bridge's coherency and scope
    /// unless it says otherwise) and checks the machine with it.
    pub fn hot_add(&self, options: &DeviceOptions) -> Result<HotAdd, HotplugError> {
        if self.arch != Arch::X86_64 {
            return Err(HotplugError::NotHotpluggable(
                "hot-plug is announced through ACPI, which only the x86_64 machine has".to_string(),
            ));
        }
        let attach = &options.attach;
        let kind = options.kind.clone();
        let id = match &attach.id {
            Some(id) => id.clone(),
            None => self.free_name(&kind),
        };
        // The console is on dmavm's terminal, which has one input.
        if kind == DeviceKind::Console {
            if let Some(console) = self.devices.iter().find(|d| d.kind == DeviceKind::Console) {
                return Err(HotplugError::Placement(format!(
                    "{id}: the machine has a console ({}) on dmavm's terminal: it takes one",
                    console.id
                )));
            }
        }
        if self.devices.iter().any(|d| d.id == id) {
            return Err(HotplugError::Placement(format!(
                "{id}: a device of that name exists: give id=NAME of another"
            )));
        }
        if attach.transport != Transport::Pci || attach.addr.is_some() {
            return Err(HotplugError::NotHotpluggable(format!(
                "{id}: only PCI devices are hot-plugged: give transport=pci,bridge=NAME of a hotplug=on bridge"
            )));
        }
        let bridge = bridge::bridge_of(&self.bridges, &id, attach)
            .map_err(|e| HotplugError::Placement(e.to_string()))?;
        if !bridge.hotplug {
            return Err(HotplugError::NotHotpluggable(format!(
                "{id}: host bridge {} is not hot-pluggable (--pci-bridge id={},hotplug=on is)",
                bridge.id, bridge.id
            )));
        }
        let slot =
            match attach.slot {
                Some(slot) if self.slot_taken(bridge, slot) => {
                    return Err(HotplugError::Placement(format!(
                        "{id}: slot {slot} of host bridge {} is taken",
                        bridge.id
                    )))
                }
                Some(slot) if !(FIRST_PCI_SLOT..=LAST_PCI_SLOT).contains(&slot) => {
                    return Err(HotplugError::Placement(format!(
                        "{id}: slot={slot}: a PCI device number is {FIRST_PCI_SLOT} to {LAST_PCI_SLOT}"
                    )))
                }
                Some(slot) => slot,
                None => (FIRST_PCI_SLOT..=LAST_PCI_SLOT).find(|s| !self.slot_taken(bridge, *s)).ok_or_else(
                    || HotplugError::Placement(format!("{id}: host bridge {} has no free slot", bridge.id)),
                )?,
            };
        // Pools are carved out of RAM at boot, below which the kernel is
        // loaded: a device arriving later cannot get one.
        if attach.dma_pool.is_some() {
            return Err(HotplugError::Placement(format!(
                "{id}: dma-pool= is placed at boot; a hot-plugged device cannot have one"
            )));
        }
        let dma = bridge::resolve_pci(attach, bridge, false);
        let placement = Placement::Pci { segment: bridge.segment, slot };
        let iommu = self.devices.iter().any(|d| d.kind == DeviceKind::Iommu) || self.vtd.is_some();
        let translated = iommu && !dma.direct_ram_access;
        let dma_path = match (dma.direct_ram_access, translated) {
            (true, _) => DmaPath::Direct,
            (false, false) => DmaPath::Identity,
            (false, true) => DmaPath::Translated { endpoint: pci_endpoint(bridge.segment, pci_bdf(slot)) },
        };
        // A bridge's pool confines every function below it, a later one too.
        let pool = bridge.dma_pool;
        let dma_path = pool.map_or(dma_path, |p| DmaPath::Pool { base: p.base, size: p.size });
        let device = Device { id, kind, placement, coherent: dma.coherent, dma: dma_path, pool };
        let mut machine = self.clone();
        machine.devices.push(device.clone());
        // The checks of `run`, on the machine as it would be: the device
        // breaks a rule exactly when a boot with it would.
        if let Some(line) = checks::refusal(&checks::check(&machine)) {
            return Err(HotplugError::Refused(line));
        }
        Ok(HotAdd { device, machine })
    }

    /// The machine without device `id`, which must sit on a `hotplug=on`
    /// bridge; and the device.
    pub fn hot_remove(&self, id: &str) -> Result<(Machine, Device), HotplugError> {
        let Some(index) = self.devices.iter().position(|d| d.id == id) else {
            let known: Vec<&str> = self.devices.iter().map(|d| d.id.as_str()).collect();
            return Err(HotplugError::Placement(format!(
                "{id}: no such device (the machine has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        };
        let device = &self.devices[index];
        let bridge = match device.placement {
            Placement::Pci { segment, .. } => self.bridge(segment),
            Placement::Mmio { .. } => None,
        };
        match bridge {
            _ if device.kind == DeviceKind::Iommu => {
                return Err(HotplugError::NotHotpluggable(format!(
                    "{id}: the IOMMU translates other devices' DMA for as long as the machine runs"
                )))
            }
            Some(b) if b.hotplug => {}
            Some(b) => {
                return Err(HotplugError::NotHotpluggable(format!(
                    "{id}: host bridge {} is not hot-pluggable",
                    b.id
                )))
            }
            None => {
                return Err(HotplugError::NotHotpluggable(format!(
                    "{id}: a virtio-mmio device is fixed in the firmware tables"
                )))
            }
        }
        let mut machine = self.clone();
        let device = machine.devices.remove(index);
        Ok((machine, device))
    }

    /// `<kind><n>` with the smallest `n` no device has.
    fn free_name(&self, kind: &DeviceKind) -> String {
        (0..)
            .map(|n| format!("{}{n}", kind.option()))
            .find(|name| self.devices.iter().all(|d| &d.id != name))
            .unwrap_or_else(|| kind.option().to_string())
    }

    fn slot_taken(&self, bridge: &PciBridge, slot: u8) -> bool {
        self.devices.iter().any(|d| d.placement == Placement::Pci { segment: bridge.segment, slot })
    }
}

#[cfg(test)]
mod tests;
