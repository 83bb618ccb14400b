//! Interrupt delivery into KVM for the user-space IOAPIC: MSIs through
//! `KVM_SIGNAL_MSI`, and the IOAPIC's redirection table mirrored as GSI
//! routes so KVM reports EOIs of level-triggered vectors
//! (`KVM_EXIT_IOAPIC_EOI`).

use std::sync::Arc;

use dmavm_devices::interrupt::{InterruptError, MsiMessage, MsiSink};
use dmavm_devices::ioapic::IoapicRoute;
use kvm_bindings::{kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::VmFd;

/// Delivers MSIs to the local APICs inside KVM.
#[derive(Debug)]
pub struct KvmMsi {
    vm: Arc<VmFd>,
}

impl KvmMsi {
    /// Delivery through `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm }
    }
}

impl MsiSink for KvmMsi {
    fn send_msi(&self, msg: MsiMessage) -> Result<(), InterruptError> {
        let msi = kvm_msi {
            address_lo: msg.address_lo(),
            address_hi: msg.address_hi(),
            data: msg.data,
            ..Default::default()
        };
        match self.vm.signal_msi(msi) {
            Ok(_) => Ok(()),
            Err(e) => {
                log::warn!("KVM_SIGNAL_MSI {:#x}/{:#x} failed: {e}", msg.address, msg.data);
                Err(InterruptError::Delivery { msg, source: std::io::Error::from_raw_os_error(e.errno()) })
            }
        }
    }

    fn ioapic_routes_changed(&self, routes: &[IoapicRoute]) {
        // Pins with a reserved delivery mode have no message and no route.
        let entries: Vec<kvm_irq_routing_entry> = routes
            .iter()
            .filter_map(|r| r.msi.map(|msi| (r.gsi, msi)))
            .map(|(gsi, msi)| {
                let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
                e.u.msi = kvm_msi_routing(msi);
                e
            })
            .collect();
        let table = match KvmIrqRouting::from_entries(&entries) {
            Ok(t) => t,
            Err(e) => {
                log::error!("cannot build the GSI routing table: {e:?}");
                return;
            }
        };
        if let Err(e) = self.vm.set_gsi_routing(&table) {
            log::error!("KVM_SET_GSI_ROUTING failed: {e}");
        }
    }
}

fn kvm_msi_routing(msg: MsiMessage) -> kvm_bindings::kvm_irq_routing_msi {
    kvm_bindings::kvm_irq_routing_msi {
        address_lo: msg.address_lo(),
        address_hi: msg.address_hi(),
        data: msg.data,
        ..Default::default()
    }
}
