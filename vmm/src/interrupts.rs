//! Interrupt delivery into KVM.
//!
//! - The user-space IOAPIC sends MSIs through `KVM_SIGNAL_MSI`, and its
//!   redirection table is mirrored as GSI routes 0-23 so that KVM reports
//!   EOIs of level-triggered vectors (`KVM_EXIT_IOAPIC_EOI`) and so that
//!   virtio-mmio devices raise their edge-triggered pins by irqfd.
//! - MSI-X vectors of PCI devices each get a GSI of their own (24 and up),
//!   an MSI route that follows the vector's table entry, and an irqfd: a
//!   device signals a vector by writing an eventfd, with no ioctl.
//!
//! `KVM_SET_GSI_ROUTING` replaces the whole table, so one [`GsiRouter`]
//! owns every route and pushes the full table on each change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use dmavm_devices::interrupt::{InterruptError, InterruptLine, MsiMessage, MsiSink, TriggerMode};
use dmavm_devices::ioapic::IoapicRoute;
use dmavm_devices::pci::MsixBackend;
use kvm_bindings::{kvm_irq_routing_entry, kvm_irq_routing_msi, kvm_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::kvm::IOAPIC_PINS;

/// KVM's limit on routing entries (`KVM_MAX_IRQ_ROUTES`).
const MAX_ROUTES: u32 = 4096;

fn routing_entry(gsi: u32, msg: MsiMessage) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
    e.u.msi = kvm_irq_routing_msi {
        address_lo: msg.address_lo(),
        address_hi: msg.address_hi(),
        data: msg.data,
        ..Default::default()
    };
    e
}

struct Routes {
    entries: BTreeMap<u32, kvm_irq_routing_entry>,
    next_gsi: u32,
}

/// Owns KVM's GSI routing table.
pub struct GsiRouter {
    vm: Arc<VmFd>,
    routes: Mutex<Routes>,
}

impl std::fmt::Debug for GsiRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsiRouter").finish_non_exhaustive()
    }
}

impl GsiRouter {
    /// A router whose first free GSI follows the IOAPIC's pins.
    pub fn new(vm: Arc<VmFd>) -> Self {
        let next_gsi = u32::try_from(IOAPIC_PINS).unwrap_or(24);
        Self { vm, routes: Mutex::new(Routes { entries: BTreeMap::new(), next_gsi }) }
    }

    /// A fresh GSI for an MSI-X vector.
    pub fn allocate(&self) -> Result<u32> {
        let mut routes = self.routes.lock().map_err(|_| anyhow::anyhow!("GSI routes poisoned"))?;
        if routes.next_gsi >= MAX_ROUTES {
            bail!("out of KVM interrupt routes ({MAX_ROUTES})");
        }
        routes.next_gsi += 1;
        Ok(routes.next_gsi - 1)
    }

    /// Sets (or, with `None`, removes) the routes of `changes` and pushes
    /// the table to KVM.
    pub fn set(&self, changes: &[(u32, Option<MsiMessage>)]) {
        let Ok(mut routes) = self.routes.lock() else { return };
        for &(gsi, msg) in changes {
            match msg {
                Some(msg) => routes.entries.insert(gsi, routing_entry(gsi, msg)),
                None => routes.entries.remove(&gsi),
            };
        }
        let entries: Vec<kvm_irq_routing_entry> = routes.entries.values().copied().collect();
        match KvmIrqRouting::from_entries(&entries) {
            Ok(table) => {
                if let Err(e) = self.vm.set_gsi_routing(&table) {
                    log::error!("KVM_SET_GSI_ROUTING failed: {e}");
                }
            }
            Err(e) => log::error!("cannot build the GSI routing table: {e:?}"),
        }
    }
}

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

/// An IOAPIC pin driven through an irqfd (KVM injects through the pin's
/// route; the route exists only while the pin may deliver).
pub struct IrqfdPin {
    evt: EventFd,
}

impl std::fmt::Debug for IrqfdPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqfdPin").finish_non_exhaustive()
    }
}

impl IrqfdPin {
    /// An irqfd for `gsi`, registered with KVM.
    pub fn new(vm: &VmFd, gsi: u32) -> Result<Self> {
        let evt = EventFd::new(EFD_NONBLOCK).context("creating an irqfd")?;
        vm.register_irqfd(&evt, gsi).with_context(|| format!("registering an irqfd for GSI {gsi}"))?;
        Ok(Self { evt })
    }
}

impl InterruptLine for IrqfdPin {
    /// An edge: KVM delivers the pin's current MSI route.
    fn assert(&self) -> Result<(), InterruptError> {
        self.evt
            .write(1)
            .map_err(|source| InterruptError::Delivery { msg: MsiMessage { address: 0, data: 0 }, source })
    }

    fn deassert(&self) -> Result<(), InterruptError> {
        Ok(())
    }
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

    fn ioapic_routes_changed(&self, routes: &[IoapicRoute]) {
        let changes: Vec<(u32, Option<MsiMessage>)> =
            routes.iter().map(|r| (r.gsi, r.msi.filter(|msg| routed_while(r.masked, *msg)))).collect();
        self.router.set(&changes);
    }
}

/// MSI-X vectors of one PCI function delivered through irqfds: each vector
/// has a GSI whose MSI route follows the vector's table entry, and an
/// eventfd registered with KVM for it. Masking and pending bits stay in the
/// device's MSI-X model, which calls `deliver` only for unmasked vectors.
pub struct IrqfdMsix {
    router: Arc<GsiRouter>,
    vectors: Vec<(u32, EventFd)>,
    /// The message each vector's route carries now.
    routed: Mutex<Vec<Option<MsiMessage>>>,
}

impl std::fmt::Debug for IrqfdMsix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqfdMsix").field("vectors", &self.vectors.len()).finish_non_exhaustive()
    }
}

impl IrqfdMsix {
    /// `count` vectors, each with a GSI and a registered irqfd.
    pub fn new(vm: &VmFd, router: Arc<GsiRouter>, count: u16) -> Result<Self> {
        let vectors = (0..count)
            .map(|v| {
                let gsi = router.allocate()?;
                let evt = EventFd::new(EFD_NONBLOCK).context("creating an irqfd")?;
                vm.register_irqfd(&evt, gsi)
                    .with_context(|| format!("registering the irqfd of MSI-X vector {v}"))?;
                Ok((gsi, evt))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { router, routed: Mutex::new(vec![None; vectors.len()]), vectors })
    }

    /// Points `vector`'s route at `msg` unless it already is.
    fn route(&self, vector: u16, msg: MsiMessage) {
        let Some(&(gsi, _)) = self.vectors.get(usize::from(vector)) else { return };
        let Ok(mut routed) = self.routed.lock() else { return };
        let Some(slot) = routed.get_mut(usize::from(vector)) else { return };
        if *slot != Some(msg) {
            *slot = Some(msg);
            self.router.set(&[(gsi, Some(msg))]);
        }
    }
}

impl MsixBackend for IrqfdMsix {
    fn deliver(&self, vector: u16, msg: MsiMessage) -> Result<(), InterruptError> {
        // The route normally follows the table already (vector_changed);
        // this only catches a message that reached us first.
        self.route(vector, msg);
        let Some((_, evt)) = self.vectors.get(usize::from(vector)) else {
            return Err(InterruptError::InvalidPin(u32::from(vector)));
        };
        evt.write(1).map_err(|source| InterruptError::Delivery { msg, source })
    }

    fn vector_changed(&self, vector: u16, msg: MsiMessage) {
        self.route(vector, msg);
    }
}

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
