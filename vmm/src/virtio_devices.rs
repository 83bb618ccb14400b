//! Building the machine's virtio devices: each device model on its
//! transport, on the MMIO bus, with its queue notifications wired to KVM
//! ioeventfds and to the event loop (vCPU threads dispatch register
//! accesses and requests are processed on the event loop, but for a device
//! that notifies inline: see [`VirtioDevice::notify_inline`]).

use dmavm_machine::input_file::{self, InputError, Purpose};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::virtio::block::{Block, BlockConfig};
use dmavm_devices::virtio::console::{Console, ConsoleInput};
use dmavm_devices::virtio::mmio::{MmioTransport, NOTIFY_OFFSET, WINDOW_SIZE};
use dmavm_devices::virtio::net::{Net, NetCounters, Tap};
use dmavm_devices::virtio::pci::VirtioPciTransport;
use dmavm_devices::virtio::rng::Rng;
use dmavm_devices::virtio::{
    pool_memory, DmaAccess, PoolBounds, PoolCounters, PoolMemory, VirtioDevice, VirtioTransport,
};
use dmavm_devices::Bus;
use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::{GuestMemory, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use dmavm_iommu::{translated_memory, IommuConfig, IommuHandle, TranslatedMemory, VirtioIommu};
use dmavm_vtd::VtdMemory;

use crate::arch::interrupts::{GsiRouter, IrqfdMsix, IrqfdPin};
use crate::console_input::{InputSink, InputTarget};
use crate::net_events::NetEvents;
use crate::pci::PciSegment;
use crate::vtd_units::VtdUnits;
use dmavm_machine::mac::MacAddress;
use dmavm_machine::options::MixedCoherency;
use dmavm_machine::{Device, DeviceKind, DmaPath, Machine, Placement};

pub use crate::event_loop::Subscriber;

/// The machine's virtio devices, built.
#[derive(Default)]
pub struct VirtioDevices {
    /// Event-loop subscribers processing each device's queues.
    pub queues: Vec<Subscriber>,
    /// The virtio console's input side and its "ready for more" event.
    pub console_input: Option<InputTarget>,
    /// The virtio-iommu's view of its endpoints (counters for `--stats`).
    pub iommu: Option<IommuHandle>,
    /// Each device confined to a restricted DMA pool, by id, with what its
    /// accesses did (for `--stats`).
    pub pools: Vec<(String, Arc<PoolCounters>)>,
    /// Each network device's id and counters (for `--stats`).
    pub net: Vec<(String, NetCountersFn)>,
    /// The VT-d units of a `type=vtd` machine (none otherwise).
    pub vtd: VtdUnits,
    /// The PCI segments, whose roots take and give up devices at run time.
    pub pci: Vec<PciSegment>,
    /// The devices on `hotplug=on` bridges that may leave at run time,
    /// whose queue handlers the event loop adds so they can be removed.
    pub removable: Vec<RemovableDevice>,
}

/// A device built and placed on its transport.
pub struct Placed {
    /// Processes its queues on the event loop.
    pub queues: Subscriber,
    /// A PCI function's MSI-X vectors, withdrawn when it is unplugged.
    pub msix: Option<Arc<IrqfdMsix>>,
}

/// A device that may be unplugged while the VM runs.
pub struct RemovableDevice {
    /// Its name in the machine model.
    pub id: String,
    /// See [`Placed`].
    pub placed: Placed,
}

/// Reads a network device's counters.
pub type NetCountersFn = Box<dyn Fn() -> NetCounters + Send + Sync>;

impl std::fmt::Debug for VirtioDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioDevices").field("queues", &self.queues.len()).finish_non_exhaustive()
    }
}

/// The console's receive queue as the event loop's stdin sink.
impl<M: GuestMemory + Send + Sync + 'static> InputSink for ConsoleInput<M> {
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.push_input(bytes)
    }
}

/// What devices are wired to.
pub struct Wiring<'a> {
    /// The VM, for ioeventfds and MSIs.
    pub vm: &'a Arc<VmFd>,
    /// Guest memory, which devices reach directly or through their
    /// endpoint's translation.
    pub mem: &'a Arc<GuestMemoryMmap>,
    /// The MMIO bus (virtio-mmio windows).
    pub mmio: &'a Bus,
    /// The PCI segments, in segment order; a virtio-pci device goes on
    /// bus 0 of its own.
    pub pci: &'a [PciSegment],
    /// GSI routes for MSI-X vectors (delivered by irqfd).
    pub router: &'a Arc<GsiRouter>,
    /// The machine, whose address map places virtio-mmio windows.
    pub machine: &'a Machine,
}

impl std::fmt::Debug for Wiring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring").finish_non_exhaustive()
    }
}

/// Creates the machine's PCI host bridges on the buses (each segment's
/// ECAM on `mmio`, segment 0's ports on `pio`), then every virtio device
/// of `machine` on its transport.
pub fn create_with_pci(
    vm: &Arc<VmFd>,
    mem: &Arc<GuestMemoryMmap>,
    mmio: &Arc<Bus>,
    pio: &Bus,
    router: &Arc<GsiRouter>,
    machine: &Machine,
) -> Result<VirtioDevices> {
    let pci = crate::pci::create(vm, mmio, pio, machine)?;
    let mut built = create(machine, &Wiring { vm, mem, mmio, pci: &pci, router, machine })?;
    built.pci = pci;
    Ok(built)
}

/// Creates the VT-d units of `machine` (if any), then every device of
/// `machine` on its transport: the virtio-iommu first (direct memory: it
/// is never in its own scope), then each device over direct memory, over
/// memory that translates every access through its endpoint when an IOMMU
/// translates it (of its segment's VT-d unit on a `type=vtd` machine, of
/// the virtio-iommu otherwise), or over memory that reaches only its
/// restricted DMA pool when it has one.
pub fn create(machine: &Machine, wiring: &Wiring<'_>) -> Result<VirtioDevices> {
    let mut built = VirtioDevices {
        vtd: VtdUnits::create(machine, wiring.vm, wiring.mem, wiring.mmio)?,
        ..VirtioDevices::default()
    };
    let hotplug_slots = machine.hotplug_endpoints();
    // A device plugged in later finds its endpoint known, with the
    // coherency its bridge declared.
    let endpoints: Vec<u32> = machine
        .devices
        .iter()
        .filter_map(|d| d.dma.endpoint())
        .chain(hotplug_slots.iter().map(|&(endpoint, _)| endpoint))
        .collect();
    for device in &machine.devices {
        let placed = match device.kind {
            DeviceKind::Iommu => {
                let noncoherent = machine
                    .noncoherent_endpoints()
                    .into_iter()
                    .chain(hotplug_slots.iter().filter(|(_, coherent)| !coherent).map(|&(e, _)| e))
                    .collect();
                let config = IommuConfig {
                    mixed_coherency: match machine.mixed_coherency {
                        MixedCoherency::Allow => dmavm_iommu::MixedCoherency::Allow,
                        MixedCoherency::Reject => dmavm_iommu::MixedCoherency::Reject,
                    },
                    noncoherent_endpoints: noncoherent,
                    boot_bypass: machine.boot_bypass,
                    msi_region: crate::arch::interrupts::IOMMU_MSI_REGION,
                    ..IommuConfig::default()
                };
                let iommu = VirtioIommu::<GuestMemoryMmap>::new(config, &endpoints, &[])
                    .with_context(|| format!("{}: virtio-iommu", device.id))?;
                built.iommu = Some(iommu.handle());
                // Never behind itself: its rings are at guest-physical
                // addresses, so its transport offers no ACCESS_PLATFORM.
                place(device, Box::new(iommu), wiring.mem.clone(), DmaAccess::GuestPhysical, wiring)?
            }
            _ => build_device(device, wiring, &mut built)?,
        };
        if removable(machine, device) {
            built.removable.push(RemovableDevice { id: device.id.clone(), placed });
        } else {
            built.queues.push(placed.queues);
        }
    }
    Ok(built)
}

/// Whether `device` can be unplugged while the VM runs: a disk, an rng or
/// the console on a `hotplug=on` bridge (a network device keeps its TAP's
/// receive handler on the event loop, wired once, at boot).
fn removable(machine: &Machine, device: &Device) -> bool {
    let on_hotplug_bridge = match device.placement {
        Placement::Pci { segment, .. } => machine.bridge(segment).is_some_and(|b| b.hotplug),
        Placement::Mmio { .. } => false,
    };
    on_hotplug_bridge
        && matches!(device.kind, DeviceKind::Disk { .. } | DeviceKind::Rng | DeviceKind::Console)
}

/// A device built while the VM runs.
pub struct HotAdded {
    /// Its queue handler and interrupts.
    pub placed: Placed,
    /// The input side of a console, which takes the terminal from the UART.
    pub console_input: Option<InputTarget>,
}

/// Builds `device`, plugged into the running VM, over the memory its DMA
/// path gives it, through the machine's IOMMU (`iommu`, `vtd`) when it is
/// translated. Only what [`removable`] allows arrives at run time.
pub fn hot_add(
    machine: &Machine,
    device: &Device,
    wiring: &Wiring<'_>,
    iommu: Option<&IommuHandle>,
    vtd: &VtdUnits,
) -> Result<HotAdded> {
    if !removable(machine, device) {
        anyhow::bail!("{}: only a disk, an rng or a console is plugged in while the VM runs", device.id);
    }
    let mut built = VirtioDevices { iommu: iommu.cloned(), vtd: vtd.clone(), ..VirtioDevices::default() };
    let placed = build_device(device, wiring, &mut built)?;
    Ok(HotAdded { placed, console_input: built.console_input.take() })
}

/// Builds a device other than the IOMMU over direct memory, over memory
/// that translates every access through its endpoint when an IOMMU
/// translates it (of its segment's VT-d unit on a `type=vtd` machine, of
/// the virtio-iommu otherwise), or over memory that reaches only its
/// restricted DMA pool when it has one.
fn build_device(device: &Device, wiring: &Wiring<'_>, built: &mut VirtioDevices) -> Result<Placed> {
    match device.dma.endpoint() {
        Some(endpoint) if !built.vtd.is_empty() => {
            let unit = built
                .vtd
                .endpoint(endpoint)
                .with_context(|| format!("{}: no VT-d unit for endpoint {endpoint:#x}", device.id))?;
            let mem = Arc::new(dmavm_vtd::translated_memory(GuestMemoryMmap::clone(wiring.mem), unit));
            build::<VtdMemory>(device, mem, dma_access(device), wiring, built)
        }
        Some(endpoint) => {
            let handle = built.iommu.as_ref().context("translated device without an IOMMU")?;
            let iommu = handle
                .endpoint(endpoint)
                .with_context(|| format!("{}: endpoint {endpoint:#x} unknown to the IOMMU", device.id))?;
            let mem = Arc::new(translated_memory(GuestMemoryMmap::clone(wiring.mem), iommu));
            build::<TranslatedMemory>(device, mem, dma_access(device), wiring, built)
        }
        None => match device.dma.pool() {
            Some((base, size)) => {
                let counters = Arc::new(PoolCounters::default());
                let bounds = PoolBounds::new(base, size, counters.clone(), &device.id)
                    .with_context(|| format!("{}: restricted DMA pool", device.id))?;
                let mem = Arc::new(pool_memory(GuestMemoryMmap::clone(wiring.mem), bounds));
                built.pools.push((device.id.clone(), counters));
                build::<PoolMemory>(device, mem, dma_access(device), wiring, built)
            }
            None => build(device, wiring.mem.clone(), dma_access(device), wiring, built),
        },
    }
}

/// What the transport of `device` declares to the driver: the machine
/// model's DMA path, in the transport's terms (see [`DmaAccess`]).
fn dma_access(device: &Device) -> DmaAccess {
    match device.dma {
        DmaPath::Direct => DmaAccess::GuestPhysical,
        DmaPath::Identity => DmaAccess::PlatformIdentity,
        DmaPath::Translated { .. } => DmaAccess::Translated,
        DmaPath::Pool { .. } => DmaAccess::RestrictedPool,
    }
}

/// Builds `device` over `mem` (direct or translated) on its transport,
/// which declares `dma_access`.
fn build<M: GuestMemory + Send + Sync + 'static>(
    device: &Device,
    mem: Arc<M>,
    dma_access: DmaAccess,
    wiring: &Wiring<'_>,
    built: &mut VirtioDevices,
) -> Result<Placed> {
    let model: Box<dyn VirtioDevice<M>> = match &device.kind {
        DeviceKind::Console => {
            let console = Console::<M>::new(Box::new(std::io::stdout()))
                .with_context(|| format!("{}: virtio-console", device.id))?;
            let input = console.input();
            let ready = input.input_ready_event().try_clone().context("console input event")?;
            built.console_input = Some((Arc::new(Mutex::new(input)), ready));
            Box::new(console)
        }
        DeviceKind::Net { tap, mac } => {
            let tap = Tap::open(tap).map_err(|e| anyhow::anyhow!("{}: {e}", device.id))?;
            let mac = MacAddress::or_generated(*mac, &device.id);
            let net =
                Net::<M>::new(mac.0, Box::new(tap)).with_context(|| format!("{}: virtio-net", device.id))?;
            let handle = net.handle();
            built.queues.push(Arc::new(Mutex::new(NetEvents::new(&device.id, handle.clone()))));
            built.net.push((device.id.clone(), Box::new(move || handle.counters())));
            Box::new(net)
        }
        _ => model(device)?,
    };
    place(device, model, mem, dma_access, wiring)
}

/// Puts `model` on the device's transport.
fn place<M: GuestMemory + Send + Sync + 'static>(
    device: &Device,
    model: Box<dyn VirtioDevice<M>>,
    mem: Arc<M>,
    dma_access: DmaAccess,
    wiring: &Wiring<'_>,
) -> Result<Placed> {
    Ok(match device.placement {
        Placement::Mmio { window } => {
            let w = wiring.machine.mmio_window(window).with_context(|| {
                format!("{}: virtio-mmio window {window} is not in the address map", device.id)
            })?;
            let queues = place_mmio(device, model, mem, dma_access, w.base, w.interrupt, wiring)?;
            Placed { queues: Arc::new(Mutex::new(queues)), msix: None }
        }
        Placement::Pci { segment, slot } => {
            let (queues, msix) = place_pci(device, model, mem, dma_access, (segment, slot), wiring)?;
            Placed { queues: Arc::new(Mutex::new(queues)), msix: Some(msix) }
        }
    })
}

fn clone_events(id: &str, events: &[EventFd]) -> Result<Vec<EventFd>> {
    events
        .iter()
        .map(EventFd::try_clone)
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("{id}: queue events"))
}

fn place_mmio<M: GuestMemory + Send + Sync + 'static>(
    device: &Device,
    model: Box<dyn VirtioDevice<M>>,
    mem: Arc<M>,
    dma_access: DmaAccess,
    base: u64,
    gsi: u32,
    wiring: &Wiring<'_>,
) -> Result<QueueNotifications<M>> {
    // An edge on the device's IOAPIC pin, injected by KVM through the pin's
    // route (which exists only while the guest leaves the pin unmasked).
    let line = IrqfdPin::new(wiring.vm, gsi).with_context(|| format!("{}: interrupt", device.id))?;
    let transport = MmioTransport::new(model, mem, Arc::new(line), dma_access)
        .with_context(|| format!("{}: virtio-mmio transport", device.id))?
        .with_label(&device.id);
    let events = clone_events(&device.id, transport.queue_events())?;
    // A device that answers on the notifying vCPU's thread gets no
    // ioeventfd: its notify writes trap to dmavm.
    let fast_path = if transport.notifies_inline() { &[][..] } else { &events[..] };
    for (i, evt) in fast_path.iter().enumerate() {
        // KVM completes the guest's notify write itself and signals the
        // eventfd: no exit to dmavm on the hot path.
        let addr = IoEventAddress::Mmio(base + NOTIFY_OFFSET);
        wiring.vm.register_ioevent(evt, &addr, u32::try_from(i)?).with_context(|| {
            format!("{}: cannot register the notification of queue {i} with KVM", device.id)
        })?;
    }
    let transport = Arc::new(Mutex::new(transport));
    wiring
        .mmio
        .insert(transport.clone(), base, WINDOW_SIZE)
        .with_context(|| format!("placing {}", device.id))?;
    Ok(QueueNotifications { id: device.id.clone(), transport, events })
}

fn place_pci<M: GuestMemory + Send + Sync + 'static>(
    device: &Device,
    model: Box<dyn VirtioDevice<M>>,
    mem: Arc<M>,
    dma_access: DmaAccess,
    (segment, slot): (u16, u8),
    wiring: &Wiring<'_>,
) -> Result<(QueueNotifications<M>, Arc<IrqfdMsix>)> {
    let location = format!("PCI {segment:04x}:00:{slot:02x}.0");
    let pci = wiring
        .pci
        .iter()
        .find(|s| s.segment == segment)
        .with_context(|| format!("{}: no host bridge for {location}", device.id))?;
    // One vector per queue plus one for configuration changes, as the
    // transport lays out its MSI-X table.
    let vectors = u16::try_from(model.queue_max_sizes().len() + 1)?;
    let backend = IrqfdMsix::new(wiring.vm, wiring.router.clone(), vectors)
        .with_context(|| format!("{}: MSI-X vectors", device.id))?;
    // Where MSIs go through an ITS (arm64), each carries the function's
    // DeviceID.
    let backend = Arc::new(backend.with_device_id(crate::arch::interrupts::msi_device_id(segment, slot)?));
    let transport = VirtioPciTransport::new(model, mem, backend.clone(), dma_access)
        .with_context(|| format!("{}: virtio-pci transport", device.id))?
        .with_label(&device.id);
    if transport.msix_vectors() != vectors {
        anyhow::bail!(
            "{}: the transport has {} MSI-X vectors, not {vectors}",
            device.id,
            transport.msix_vectors()
        );
    }
    let events = clone_events(&device.id, transport.queue_events())?;
    // A device that answers on the notifying vCPU's thread gets no
    // ioeventfd: its notify writes trap to dmavm.
    let notify = if transport.notifies_inline() {
        Vec::new()
    } else {
        clone_events(&device.id, transport.queue_events())?
            .into_iter()
            .enumerate()
            .filter_map(|(i, evt)| Some((evt, transport.notify_offset(i)?)))
            .collect()
    };
    // Recorded first: adding the device maps its BAR, which registers these.
    pci.notify.record(slot, &device.id, notify);
    let transport = Arc::new(Mutex::new(transport));
    pci.root
        .lock()
        .map_err(|_| anyhow::anyhow!("the PCI root of segment {segment} is unusable after a panic"))?
        .add_device_at(slot, transport.clone())
        .with_context(|| format!("placing {} at {location}", device.id))?;
    Ok((QueueNotifications { id: device.id.clone(), transport, events }, backend))
}

fn model<M: GuestMemory + Send + Sync + 'static>(device: &Device) -> Result<Box<dyn VirtioDevice<M>>> {
    Ok(match &device.kind {
        DeviceKind::Disk { path, readonly } => {
            // Read-only for readonly=on: the least access the disk needs.
            let file = input_file::open(path, Purpose::Disk { writable: !readonly }).map_err(|e| {
                let hint = match &e {
                    InputError::Open { io, .. }
                        if !readonly && io.kind() == std::io::ErrorKind::PermissionDenied =>
                    {
                        " (add readonly=on for a read-only disk)"
                    }
                    _ => "",
                };
                anyhow::anyhow!("{}: {e}{hint}", device.id)
            })?;
            let config = BlockConfig { file, read_only: *readonly, id: device.id.clone() };
            Box::new(Block::new(config).with_context(|| format!("{}: disk {}", device.id, path.display()))?)
        }
        DeviceKind::Rng => Box::new(Rng::new()),
        DeviceKind::Iommu => {
            anyhow::bail!("{}: the virtio-iommu is built before the devices it translates", device.id)
        }
        DeviceKind::Console => anyhow::bail!("{}: the console is built with its input", device.id),
        DeviceKind::Net { .. } => {
            anyhow::bail!("{}: the network device is built with its receiver", device.id)
        }
    })
}

/// Processes one device's queue notifications on the event loop.
pub struct QueueNotifications<M: GuestMemory + Send + Sync + 'static> {
    id: String,
    transport: Arc<Mutex<dyn VirtioTransport<M>>>,
    events: Vec<EventFd>,
}

impl<M: GuestMemory + Send + Sync + 'static> std::fmt::Debug for QueueNotifications<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueNotifications").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> MutEventSubscriber for QueueNotifications<M> {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let Some(queue) = self.events.iter().position(|e| e.as_raw_fd() == events.fd()) else {
            return;
        };
        // WouldBlock: a spurious wake-up, nothing pending.
        if self.events[queue].read().is_err() {
            return;
        }
        match self.transport.lock() {
            Ok(mut t) => t.process_notification(queue),
            Err(_) => log::error!("{}: device unusable after a panic", self.id),
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.events {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("{}: cannot watch a queue notification: {e:?}", self.id);
            }
        }
    }
}
