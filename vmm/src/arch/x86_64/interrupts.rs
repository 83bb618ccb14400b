//! Interrupt delivery into KVM on x86_64.
//!
//! - The user-space IOAPIC sends MSIs through `KVM_SIGNAL_MSI`, and its
//!   redirection table is mirrored as GSI routes 0-23 so that KVM reports
//!   EOIs of level-triggered vectors (`KVM_EXIT_IOAPIC_EOI`) and so that
//!   virtio-mmio devices raise their edge-triggered pins by irqfd
//!   ([`IrqfdPin`]: KVM injects through the pin's route, which exists only
//!   while the pin may deliver).
//! - MSI-X vectors of PCI devices each get a GSI of their own (24 and up),
//!   an MSI route that follows the vector's table entry, and an irqfd
//!   ([`IrqfdMsix`]): a device signals a vector by writing an eventfd, with
//!   no ioctl.
//!
//! The routing table's owner and the irqfds are shared with arm64
//! (`crate::irqfd`).

use std::sync::Arc;

use dmavm_devices::interrupt::{InterruptError, MsiMessage, MsiSink, TriggerMode};
use dmavm_devices::ioapic::{IoapicRoute, IoapicSink};
use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;

use crate::irqfd::msi_route;
pub use crate::irqfd::{GsiRouter, IrqfdMsix, IrqfdPin};
/// IOAPIC pins, and so the routes KVM reserves for them with the split
/// irqchip.
pub const IOAPIC_PINS: u64 = 24;

/// First GSI handed out for MSI-X vectors: the IOAPIC's pins come first.
pub const FIRST_MSI_GSI: u32 = IOAPIC_PINS as u32;

/// Whether every MSI must carry its requester's DeviceID: no, an x86 MSI
/// names its target in the message.
pub const MSIS_CARRY_DEVICE_ID: bool = false;

/// Whether an IOAPIC pin keeps its KVM route. Pins with a reserved delivery
/// mode have no message and no route. A masked level-triggered pin keeps
/// it, so KVM still reports the EOI of an interrupt already in service. A
/// masked edge-triggered pin loses it: virtio-mmio devices signal such pins
/// through irqfds, which KVM would otherwise deliver despite the mask, and
/// an edge arriving at a masked 82093AA pin is lost anyway.
fn routed_while(masked: bool, msg: MsiMessage) -> bool {
    let level = msg.fields().is_some_and(|f| f.trigger_mode == TriggerMode::Level);
    !masked || level
}

/// Delivers the IOAPIC's MSIs to the local APICs inside KVM.
#[derive(Debug)]
pub struct KvmMsi {
    vm: Arc<VmFd>,
    router: Arc<GsiRouter>,
}

impl KvmMsi {
    /// Delivery through `vm`, routes through `router`.
    pub fn new(vm: Arc<VmFd>, router: Arc<GsiRouter>) -> Self {
        Self { vm, router }
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
}

impl IoapicSink for KvmMsi {
    fn routes_changed(&self, routes: &[IoapicRoute]) {
        let changes: Vec<_> = routes
            .iter()
            .map(|r| {
                (r.gsi, r.msi.filter(|msg| routed_while(r.masked, *msg)).map(|m| msi_route(r.gsi, m, None)))
            })
            .collect();
        self.router.set(&changes);
    }
}

/// The DeviceID the MSIs of function 0 of `slot` on PCI segment `segment`
/// carry: none on x86_64, where a message names its target itself.
pub fn msi_device_id(_segment: u16, _slot: u8) -> anyhow::Result<Option<u32>> {
    Ok(None)
}

/// The MSI doorbell the virtio-iommu reports to the guest as a hardware MSI
/// region (RESV_MEM_T_MSI): the local APICs' 0xFEE00000 window
/// ([`dmavm_iommu::X86_MSI_REGION`]), which the IOMMU never translates.
pub const IOMMU_MSI_REGION: Option<(u64, u64)> = Some(dmavm_iommu::X86_MSI_REGION);

#[cfg(test)]
mod tests {
    use super::*;
    use dmavm_devices::interrupt::{DeliveryMode, DestinationMode, MsiFields};

    fn msg(trigger_mode: TriggerMode) -> MsiMessage {
        MsiMessage::new(MsiFields {
            destination: 0,
            dest_mode: DestinationMode::Physical,
            redirection_hint: false,
            vector: 0x30,
            delivery_mode: DeliveryMode::Fixed,
            trigger_mode,
            level_assert: true,
        })
    }

    #[test]
    fn masked_edge_pins_lose_their_route_level_pins_keep_it() {
        assert!(routed_while(false, msg(TriggerMode::Edge)));
        assert!(!routed_while(true, msg(TriggerMode::Edge)));
        assert!(routed_while(true, msg(TriggerMode::Level)));
        assert!(routed_while(false, msg(TriggerMode::Level)));
    }
}
