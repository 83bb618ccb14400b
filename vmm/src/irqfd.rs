//! What both architectures' interrupt wiring shares: the owner of KVM's
//! GSI routing table, and interrupts raised by irqfd (a wired line, the
//! MSI-X vectors of a PCI function). Each architecture's
//! `arch::interrupts` adds its own routes: IOAPIC pins, GIC SPIs.
//!
//! `KVM_SET_GSI_ROUTING` replaces the whole table (on arm64 including the
//! identity routes vgic_init() installs), so one [`GsiRouter`] owns every
//! route and pushes the full table on each change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use dmavm_devices::interrupt::{InterruptError, InterruptLine, MsiMessage};
use dmavm_devices::pci::MsixBackend;
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_msi, kvm_irq_routing_msi__bindgen_ty_1, KvmIrqRouting,
    KVM_IRQ_ROUTING_MSI, KVM_MSI_VALID_DEVID,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// KVM's limit on routing entries (`KVM_MAX_IRQ_ROUTES`), and the bound on
/// the table dmavm keeps: routes are keyed by GSI, and no GSI at or above
/// it is handed out or accepted, so however often the guest rewrites its
/// MSI-X tables and IOAPIC redirection entries, the table holds at most
/// this many routes (in practice one per wired line and per MSI-X vector,
/// fixed when the devices are built).
pub(crate) const MAX_ROUTES: u32 = 4096;

/// An MSI route for `gsi`; with `devid`, the requester's DeviceID, which an
/// arm64 ITS needs (`KVM_MSI_VALID_DEVID`; KVM refuses MSIs without one
/// there, `msis_require_devid` in vgic_init()).
pub fn msi_route(gsi: u32, msg: MsiMessage, devid: Option<u32>) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
    e.u.msi = kvm_irq_routing_msi {
        address_lo: msg.address_lo(),
        address_hi: msg.address_hi(),
        data: msg.data,
        ..Default::default()
    };
    if let Some(devid) = devid {
        e.flags = KVM_MSI_VALID_DEVID;
        e.u.msi.__bindgen_anon_1 = kvm_irq_routing_msi__bindgen_ty_1 { devid };
    }
    e
}

struct Routes {
    entries: BTreeMap<u32, kvm_irq_routing_entry>,
    next_gsi: u32,
    /// GSIs given back by unplugged devices, handed out again first.
    released: Vec<u32>,
}

/// Where the routing table goes: KVM (`KVM_SET_GSI_ROUTING`), or a recorder
/// in tests.
pub trait RoutingTable: Send + Sync {
    /// Replaces the whole table with `table`.
    fn set_routes(&self, table: &KvmIrqRouting) -> Result<()>;
}

impl RoutingTable for VmFd {
    fn set_routes(&self, table: &KvmIrqRouting) -> Result<()> {
        self.set_gsi_routing(table).context("KVM_SET_GSI_ROUTING failed")
    }
}

/// Owns KVM's GSI routing table.
pub struct GsiRouter {
    table: Arc<dyn RoutingTable>,
    routes: Mutex<Routes>,
}

impl std::fmt::Debug for GsiRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsiRouter").finish_non_exhaustive()
    }
}

impl GsiRouter {
    /// A router with no routes yet, handing out GSIs from `first_free`
    /// (the ones below belong to the architecture's wired lines).
    pub fn new(table: Arc<dyn RoutingTable>, first_free: u32) -> Self {
        Self {
            table,
            routes: Mutex::new(Routes {
                entries: BTreeMap::new(),
                next_gsi: first_free,
                released: Vec::new(),
            }),
        }
    }

    /// A fresh GSI for an MSI-X vector.
    pub fn allocate(&self) -> Result<u32> {
        let mut routes = self.routes.lock().map_err(|_| anyhow!("GSI routes poisoned"))?;
        if let Some(gsi) = routes.released.pop() {
            return Ok(gsi);
        }
        if routes.next_gsi >= MAX_ROUTES {
            bail!("out of KVM interrupt routes ({MAX_ROUTES})");
        }
        routes.next_gsi += 1;
        Ok(routes.next_gsi - 1)
    }

    /// Gives `gsis` back (an unplugged device's vectors): their routes go,
    /// and [`Self::allocate`] hands them out again, so plugging and
    /// unplugging devices never runs out of routes.
    pub fn release(&self, gsis: &[u32]) -> Result<()> {
        let changes: Vec<_> = gsis.iter().map(|&gsi| (gsi, None)).collect();
        self.try_set(&changes)?;
        let mut guard = self.routes.lock().map_err(|_| anyhow!("GSI routes poisoned"))?;
        let routes = &mut *guard;
        for &gsi in gsis {
            // Only what was handed out, once.
            if gsi < routes.next_gsi && !routes.released.contains(&gsi) {
                routes.released.push(gsi);
            }
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) the routes of `changes` and pushes
    /// the table to KVM. A GSI at or above [`MAX_ROUTES`] is refused, with
    /// no change made.
    pub fn try_set(&self, changes: &[(u32, Option<kvm_irq_routing_entry>)]) -> Result<()> {
        let mut routes = self.routes.lock().map_err(|_| anyhow!("GSI routes poisoned"))?;
        if let Some(&(gsi, _)) = changes.iter().find(|(gsi, _)| *gsi >= MAX_ROUTES) {
            bail!("GSI {gsi} is beyond KVM's {MAX_ROUTES} interrupt routes");
        }
        for &(gsi, entry) in changes {
            match entry {
                Some(entry) => routes.entries.insert(gsi, entry),
                None => routes.entries.remove(&gsi),
            };
        }
        let entries: Vec<kvm_irq_routing_entry> = routes.entries.values().copied().collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| anyhow!("building the GSI routing table: {e:?}"))?;
        self.table.set_routes(&table)
    }

    /// [`Self::try_set`] for callers that cannot fail (routes changed by
    /// the guest): a failure is logged.
    pub fn set(&self, changes: &[(u32, Option<kvm_irq_routing_entry>)]) {
        if let Err(e) = self.try_set(changes) {
            log::error!("{e:#}");
        }
    }
}

/// A wired interrupt raised through an irqfd: an edge, which KVM delivers
/// through the GSI's current route (an IOAPIC pin's MSI, a GIC SPI).
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
        let evt = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).context("creating an irqfd")?;
        vm.register_irqfd(&evt, gsi).with_context(|| format!("registering an irqfd for GSI {gsi}"))?;
        Ok(Self { evt })
    }

    /// One edge: KVM sets the line and clears it again (irqfd_inject()).
    pub fn trigger(&self) -> std::io::Result<()> {
        self.evt.write(1)
    }
}

impl InterruptLine for IrqfdPin {
    fn assert(&self) -> Result<(), InterruptError> {
        self.trigger()
            .map_err(|source| InterruptError::Delivery { msg: MsiMessage { address: 0, data: 0 }, source })
    }

    fn deassert(&self) -> Result<(), InterruptError> {
        Ok(())
    }
}

/// MSI-X vectors of one PCI function delivered through irqfds: each vector
/// has a GSI whose MSI route follows the vector's table entry (on arm64
/// with the function's ITS DeviceID), and an eventfd registered with KVM
/// for it. Masking and pending bits stay in the device's MSI-X model, which
/// calls `deliver` only for unmasked vectors.
pub struct IrqfdMsix {
    router: Arc<GsiRouter>,
    vectors: Vec<(u32, EventFd)>,
    /// The message each vector's route carries now.
    routed: Mutex<Vec<Option<MsiMessage>>>,
    /// The function's ITS DeviceID (arm64; see [`IrqfdMsix::with_device_id`]).
    devid: Option<u32>,
    /// The vectors were withdrawn ([`IrqfdMsix::release`]).
    released: AtomicBool,
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
                let evt = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).context("creating an irqfd")?;
                vm.register_irqfd(&evt, gsi)
                    .with_context(|| format!("registering the irqfd of MSI-X vector {v}"))?;
                Ok((gsi, evt))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            router,
            routed: Mutex::new(vec![None; vectors.len()]),
            vectors,
            devid: None,
            released: AtomicBool::new(false),
        })
    }

    /// Vectors whose GSIs and irqfds exist already (tests: no KVM).
    #[cfg(test)]
    fn with_vectors(router: Arc<GsiRouter>, vectors: Vec<(u32, EventFd)>) -> Self {
        Self {
            router,
            routed: Mutex::new(vec![None; vectors.len()]),
            vectors,
            devid: None,
            released: AtomicBool::new(false),
        }
    }

    /// Withdraws every vector (the function was unplugged): its irqfd
    /// leaves KVM, its route goes and its GSI is given back. Deliveries
    /// after this reach no vCPU; a vector the guest reprograms later gets
    /// no route.
    pub fn release(&self, vm: &VmFd) -> Result<()> {
        let mut routed = self.routed.lock().map_err(|_| anyhow!("MSI-X routes poisoned"))?;
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        routed.iter_mut().for_each(|r| *r = None);
        for (gsi, evt) in &self.vectors {
            vm.unregister_irqfd(evt, *gsi)
                .with_context(|| format!("unregistering the irqfd of GSI {gsi}"))?;
        }
        let gsis: Vec<u32> = self.vectors.iter().map(|(gsi, _)| *gsi).collect();
        self.router.release(&gsis)
    }

    /// The DeviceID the function's MSIs carry, if the interrupt
    /// controller needs one: an arm64 ITS routes nothing without it (the
    /// device tree's `msi-map` gives it per requester ID); an x86 MSI names
    /// its target in the message itself (`None`).
    pub fn with_device_id(mut self, devid: Option<u32>) -> Self {
        self.devid = devid;
        self
    }

    /// Points `vector`'s route at `msg` unless it already is.
    fn route(&self, vector: u16, msg: MsiMessage) {
        if crate::arch::interrupts::MSIS_CARRY_DEVICE_ID && self.devid.is_none() {
            log::error!("MSI-X vector {vector}: the function has no ITS DeviceID; not routed");
            return;
        }
        let Some(&(gsi, _)) = self.vectors.get(usize::from(vector)) else { return };
        let Ok(mut routed) = self.routed.lock() else { return };
        // Checked under the lock `release` takes: no route outlives it.
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        let Some(slot) = routed.get_mut(usize::from(vector)) else { return };
        if *slot != Some(msg) {
            *slot = Some(msg);
            self.router.set(&[(gsi, Some(msi_route(gsi, msg, self.devid)))]);
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
    #![allow(clippy::unwrap_used)]

    use dmavm_devices::interrupt::{DeliveryMode, DestinationMode, MsiFields, TriggerMode};

    use super::*;

    /// Records the size of every table pushed.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<usize>>);

    impl RoutingTable for Recorder {
        fn set_routes(&self, table: &KvmIrqRouting) -> Result<()> {
            self.0.lock().unwrap().push(table.as_slice().len());
            Ok(())
        }
    }

    fn msg(destination: u8, vector: u8) -> MsiMessage {
        MsiMessage::new(MsiFields {
            destination,
            dest_mode: DestinationMode::Physical,
            redirection_hint: false,
            vector,
            delivery_mode: DeliveryMode::Fixed,
            trigger_mode: TriggerMode::Edge,
            level_assert: true,
        })
    }

    /// A guest rewriting its MSI-X table entries (and IOAPIC pins) over and
    /// over: each write replaces its vector's route, so the table keeps one
    /// route per wired line and vector however many writes there are; GSIs
    /// run out at `MAX_ROUTES` with an error, and a route beyond it is
    /// refused.
    #[test]
    fn rewritten_msix_entries_do_not_grow_the_route_table() {
        const PINS: u32 = 24;
        const VECTORS: u16 = 16;
        let recorder = Arc::new(Recorder::default());
        let router = Arc::new(GsiRouter::new(recorder.clone(), PINS));
        let pins: Vec<_> = (0..PINS).map(|gsi| (gsi, Some(msi_route(gsi, msg(0, 0x20), None)))).collect();
        router.try_set(&pins).unwrap();
        let vectors =
            (0..VECTORS).map(|_| (router.allocate().unwrap(), EventFd::new(EFD_NONBLOCK).unwrap())).collect();
        // A device ID, so that arm64 builds route too.
        let msix = IrqfdMsix::with_vectors(router.clone(), vectors).with_device_id(Some(8));
        for i in 0..20_000u32 {
            let vector = (i % u32::from(VECTORS)) as u16;
            msix.vector_changed(vector, msg((i / 16) as u8, (i % 200 + 0x30) as u8));
            if i % 7 == 0 {
                let gsi = i % PINS;
                router.set(&[(gsi, Some(msi_route(gsi, msg(i as u8, 0x40), None)))]);
            }
        }
        let pushed = recorder.0.lock().unwrap();
        assert!(pushed.len() > 20_000, "{} tables pushed", pushed.len());
        let most = *pushed.iter().max().unwrap();
        assert_eq!(most, (PINS + u32::from(VECTORS)) as usize);
        assert_eq!(router.routes.lock().unwrap().entries.len(), most);
        drop(pushed);
        // GSIs run out at KVM's limit.
        let free = MAX_ROUTES - PINS - u32::from(VECTORS);
        for _ in 0..free {
            router.allocate().unwrap();
        }
        assert!(router.allocate().is_err());
        let before = recorder.0.lock().unwrap().len();
        assert!(router.try_set(&[(MAX_ROUTES, Some(msi_route(MAX_ROUTES, msg(0, 0x30), None)))]).is_err());
        assert_eq!(recorder.0.lock().unwrap().len(), before);
        assert_eq!(router.routes.lock().unwrap().entries.len(), most);
    }

    /// Plugging and unplugging a device forever never runs out of GSIs:
    /// an unplugged device's vectors lose their routes and their GSIs are
    /// handed out again, once each however often they are given back.
    #[test]
    fn released_gsis_are_reused_and_their_routes_gone() {
        let recorder = Arc::new(Recorder::default());
        let router = Arc::new(GsiRouter::new(recorder.clone(), 24));
        for round in 0..(2 * MAX_ROUTES) {
            let gsis = [router.allocate().unwrap(), router.allocate().unwrap()];
            router.try_set(&gsis.map(|g| (g, Some(msi_route(g, msg(0, 0x30), None))))).unwrap();
            assert!(gsis.iter().all(|g| (24..27).contains(g)), "round {round}: {gsis:?}");
            router.release(&gsis).unwrap();
            router.release(&gsis).unwrap();
            assert!(router.routes.lock().unwrap().entries.is_empty());
        }
        let routes = router.routes.lock().unwrap();
        assert!(routes.released.len() <= 2, "{:?}", routes.released);
        // A GSI never handed out is not taken back.
        drop(routes);
        router.release(&[4000]).unwrap();
        assert!(!router.routes.lock().unwrap().released.contains(&4000));
    }
}
