//! Interrupt delivery into KVM's in-kernel GICv3 and its ITS: the arm64
//! counterpart of the x86_64 `interrupts` module, with the names the shared
//! device wiring (`virtio_devices.rs`) uses.
//!
//! - Wired interrupts (the UART, virtio-mmio devices) are SPIs raised by
//!   irqfd: the GSI an irqfd is registered on has a
//!   `KVM_IRQ_ROUTING_IRQCHIP` route whose pin is the SPI number
//!   (arch/arm64/kvm/vgic/vgic-irqfd.c adds the 32 private interrupts;
//!   Documentation/virt/kvm/api.rst, KVM_SET_GSI_ROUTING). The machine
//!   model numbers virtio-mmio GSIs from 5 (x86 IOAPIC pins); the route maps
//!   each to the SPI the device tree declares for the device's window.
//! - MSI-X vectors of PCI functions go through the ITS: each vector has a
//!   GSI with a `KVM_IRQ_ROUTING_MSI` route carrying the function's ITS
//!   DeviceID (`KVM_MSI_VALID_DEVID`: with an ITS, KVM refuses MSIs without
//!   one, `msis_require_devid` in vgic_init()), and an irqfd.
//!
//! `KVM_SET_GSI_ROUTING` replaces the whole table, including the identity
//! routes vgic_init() installs, so one [`GsiRouter`] owns every route and
//! pushes the full table on each change; it must only be used after the
//! vGIC is initialised (which would otherwise reinstall its defaults).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use dmavm_devices::interrupt::{InterruptError, InterruptLine, MsiMessage};
use dmavm_devices::pci::MsixBackend;
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_irqchip, kvm_irq_routing_msi, kvm_irq_routing_msi__bindgen_ty_1,
    KvmIrqRouting, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MSI_VALID_DEVID,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// KVM's limit on routing entries (`KVM_MAX_IRQ_ROUTES`).
const MAX_ROUTES: u32 = 4096;
/// First GSI handed out for MSI-X vectors: the machine model gives
/// virtio-mmio devices GSIs up to 23, the UART has [`super::uart::GSI`].
const FIRST_MSI_GSI: u32 = 24;
/// `kvm_irq_routing_irqchip.irqchip` of the (only) vGIC.
const GIC_IRQCHIP: u32 = 0;

fn spi_entry(gsi: u32, spi: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
    e.u.irqchip = kvm_irq_routing_irqchip { irqchip: GIC_IRQCHIP, pin: spi };
    e
}

fn msi_entry(gsi: u32, msg: MsiMessage, devid: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        flags: KVM_MSI_VALID_DEVID,
        ..Default::default()
    };
    e.u.msi = kvm_irq_routing_msi {
        address_lo: msg.address_lo(),
        address_hi: msg.address_hi(),
        data: msg.data,
        __bindgen_anon_1: kvm_irq_routing_msi__bindgen_ty_1 { devid },
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
    /// A router with no routes yet.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm, routes: Mutex::new(Routes { entries: BTreeMap::new(), next_gsi: FIRST_MSI_GSI }) }
    }

    /// A fresh GSI for an MSI-X vector.
    pub fn allocate(&self) -> Result<u32> {
        let mut routes = self.routes.lock().map_err(|_| anyhow!("GSI routes poisoned"))?;
        if routes.next_gsi >= MAX_ROUTES {
            bail!("out of KVM interrupt routes ({MAX_ROUTES})");
        }
        routes.next_gsi += 1;
        Ok(routes.next_gsi - 1)
    }

    /// Routes `gsi` to SPI `spi` (INTID 32 + `spi`).
    pub fn route_spi(&self, gsi: u32, spi: u32) -> Result<()> {
        let mut routes = self.routes.lock().map_err(|_| anyhow!("GSI routes poisoned"))?;
        routes.entries.insert(gsi, spi_entry(gsi, spi));
        self.push(&routes).with_context(|| format!("routing GSI {gsi} to SPI {spi}"))
    }

    /// Sets (or, with `None`, removes) the MSI route of `gsi`.
    fn set_msi(&self, gsi: u32, msi: Option<(MsiMessage, u32)>) {
        let Ok(mut routes) = self.routes.lock() else { return };
        match msi {
            Some((msg, devid)) => routes.entries.insert(gsi, msi_entry(gsi, msg, devid)),
            None => routes.entries.remove(&gsi),
        };
        if let Err(e) = self.push(&routes) {
            log::error!("{e:#}");
        }
    }

    fn push(&self, routes: &Routes) -> Result<()> {
        let entries: Vec<kvm_irq_routing_entry> = routes.entries.values().copied().collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| anyhow!("building the GSI routing table: {e:?}"))?;
        self.vm.set_gsi_routing(&table).context("KVM_SET_GSI_ROUTING failed")
    }
}

/// A wired interrupt (an SPI) raised through an irqfd: an edge, delivered
/// by KVM through the GSI's route.
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

    /// One edge: KVM sets the line and clears it again (irqfd_inject()),
    /// which latches an edge-triggered SPI pending.
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

/// MSI-X vectors of one PCI function delivered through irqfds and the ITS:
/// each vector has a GSI whose MSI route follows the vector's table entry
/// (address: the ITS's GITS_TRANSLATER, data: the EventID) with the
/// function's DeviceID. Masking and pending bits stay in the device's
/// MSI-X model, which calls `deliver` only for unmasked vectors.
pub struct IrqfdMsix {
    router: Arc<GsiRouter>,
    vectors: Vec<(u32, EventFd)>,
    /// The message each vector's route carries now.
    routed: Mutex<Vec<Option<MsiMessage>>>,
    /// The function's ITS DeviceID; `None` until [`IrqfdMsix::with_device_id`].
    devid: Option<u32>,
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
        Ok(Self { router, routed: Mutex::new(vec![None; vectors.len()]), vectors, devid: None })
    }

    /// The ITS DeviceID the function's MSIs carry (what the device tree's
    /// `msi-map` gives its requester ID).
    pub fn with_device_id(mut self, devid: u32) -> Self {
        self.devid = Some(devid);
        self
    }

    /// Points `vector`'s route at `msg` unless it already is.
    fn route(&self, vector: u16, msg: MsiMessage) {
        let Some(devid) = self.devid else {
            log::error!("MSI-X vector {vector}: the function has no ITS DeviceID; not routed");
            return;
        };
        let Some(&(gsi, _)) = self.vectors.get(usize::from(vector)) else { return };
        let Ok(mut routed) = self.routed.lock() else { return };
        let Some(slot) = routed.get_mut(usize::from(vector)) else { return };
        if *slot != Some(msg) {
            *slot = Some(msg);
            self.router.set_msi(gsi, Some((msg, devid)));
        }
    }
}

impl MsixBackend for IrqfdMsix {
    fn deliver(&self, vector: u16, msg: MsiMessage) -> Result<(), InterruptError> {
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
