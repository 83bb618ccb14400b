//! The VT-d remapping units of a `--iommu type=vtd` machine: one
//! `dmavm_vtd::VtdUnit` per unit of the machine model, its registers on
//! the MMIO bus at the base the DMAR table gives it, its fault and
//! invalidation-completion interrupts delivered with `KVM_SIGNAL_MSI`.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::bus::BusDevice;
use dmavm_devices::Bus;
use dmavm_machine::Machine;
use dmavm_vtd::{FaultInterrupt, VtdConfig, VtdEndpoint, VtdStats, VtdUnit, REGISTER_SPACE};
use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

/// The machine's VT-d units, built.
#[derive(Debug, Default, Clone)]
pub struct VtdUnits {
    /// Each unit with the PCI segment it serves and its name (`dmar0`...).
    units: Vec<(u16, String, VtdUnit)>,
}

/// A unit's interrupts, as the guest programmed them, injected by KVM.
struct KvmSignalMsi(Arc<VmFd>);

impl FaultInterrupt for KvmSignalMsi {
    fn send_msi(&self, address: u64, data: u32) {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        if let Err(e) = self.0.signal_msi(msi) {
            dmavm_devices::guest_log!(static log::Level::Warn, "VT-d: KVM_SIGNAL_MSI {address:#x}/{data:#x} failed: {e}");
        }
    }
}

/// A unit's register page on the MMIO bus.
struct Registers(VtdUnit);

impl BusDevice for Registers {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0.write(offset, data);
    }
}

impl VtdUnits {
    /// Builds every VT-d unit of `machine` over `mem` and maps its
    /// registers on `mmio`; none without `--iommu type=vtd`.
    pub fn create(machine: &Machine, vm: &Arc<VmFd>, mem: &GuestMemoryMmap, mmio: &Bus) -> Result<Self> {
        let mut units = Vec::new();
        for model in machine.vtd_units() {
            let config = VtdConfig { coherent: model.coherent, ..VtdConfig::default() };
            let unit = VtdUnit::new(config, mem.clone(), Arc::new(KvmSignalMsi(vm.clone())));
            mmio.insert(Arc::new(Mutex::new(Registers(unit.clone()))), model.register_base, REGISTER_SPACE)
                .with_context(|| format!("placing the registers of VT-d unit {}", model.name()))?;
            units.push((model.segment, model.name(), unit));
        }
        Ok(Self { units })
    }

    /// Whether the machine has any unit.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The translation of the PCI function with endpoint ID `endpoint`
    /// (`segment << 16 | requester ID`), by the unit of its segment.
    pub fn endpoint(&self, endpoint: u32) -> Option<VtdEndpoint> {
        let segment = (endpoint >> 16) as u16;
        let (_, _, unit) = self.units.iter().find(|(s, _, _)| *s == segment)?;
        Some(unit.endpoint(endpoint as u16))
    }

    /// Each unit's name and the counters of every source ID it translated
    /// for, with the endpoint ID of that source ID.
    pub fn stats(&self) -> Vec<(&str, u32, VtdStats)> {
        self.units
            .iter()
            .flat_map(|(segment, name, unit)| {
                unit.stats()
                    .into_iter()
                    .map(move |s| (name.as_str(), dmavm_machine::pci_endpoint(*segment, s.source_id), s))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    /// The DMAR table's host address width is the width the units' tables
    /// may point into.
    #[test]
    fn the_dmar_and_the_units_agree_on_the_address_width() {
        assert_eq!(u32::from(dmavm_machine::vtd::VTD_ADDRESS_WIDTH), dmavm_vtd::ADDRESS_WIDTH);
    }
}
