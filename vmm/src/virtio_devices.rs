//! Building the machine's virtio devices: each device model on its
//! transport, on the MMIO bus, with its queue notifications wired to KVM
//! ioeventfds and to the event loop (vCPU threads only dispatch register
//! accesses; requests are processed on the event loop).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::ioapic::{Ioapic, IoapicPin};
use dmavm_devices::virtio::block::{Block, BlockConfig};
use dmavm_devices::virtio::console::{Console, ConsoleConfig, ConsoleInput};
use dmavm_devices::virtio::mmio::{MmioTransport, NOTIFY_OFFSET, WINDOW_SIZE};
use dmavm_devices::virtio::rng::{Rng, RngConfig};
use dmavm_devices::virtio::VirtioDevice;
use dmavm_devices::Bus;
use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::event_loop::InputSink;
use crate::machine::{Device, DeviceKind, Machine, Placement};

type Transport = MmioTransport<GuestMemoryMmap>;

/// The machine's virtio devices, built.
#[derive(Debug, Default)]
pub struct VirtioDevices {
    /// Event-loop subscribers processing each device's queues.
    pub queues: Vec<QueueNotifications>,
    /// The virtio console's input side and its "ready for more" event.
    pub console_input: Option<(ConsoleInput<GuestMemoryMmap>, EventFd)>,
}

/// The console's receive queue as the event loop's stdin sink.
impl InputSink for ConsoleInput<GuestMemoryMmap> {
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.push_input(bytes)
    }
}

/// Creates every device of `machine` and places it on `mmio`.
pub fn create(
    machine: &Machine,
    vm: &VmFd,
    mem: &Arc<GuestMemoryMmap>,
    mmio: &Bus,
    ioapic: &Arc<Mutex<Ioapic>>,
) -> Result<VirtioDevices> {
    let mut built = VirtioDevices::default();
    for device in &machine.devices {
        let model = match device.kind {
            DeviceKind::Console => {
                let console = Console::new(
                    ConsoleConfig { access_platform: device.access_platform },
                    Box::new(std::io::stdout()),
                )
                .with_context(|| format!("{}: virtio-console", device.id))?;
                let input = console.input();
                let ready = input.input_ready_event().try_clone().context("console input event")?;
                built.console_input = Some((input, ready));
                Box::new(console)
            }
            _ => model(device)?,
        };
        let Placement::Mmio { base, gsi } = device.placement;
        let line =
            IoapicPin::new(ioapic.clone(), gsi).with_context(|| format!("{}: interrupt", device.id))?;
        // No IOMMU yet: nothing requires ACCESS_PLATFORM to be accepted.
        let transport = Transport::new(model, mem.clone(), Arc::new(line), false)
            .with_context(|| format!("{}: virtio-mmio transport", device.id))?
            .with_label(&device.id);
        let events = transport
            .queue_events()
            .iter()
            .map(EventFd::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("{}: queue events", device.id))?;
        for (i, evt) in events.iter().enumerate() {
            // KVM completes the guest's notify write itself and signals the
            // eventfd: no exit to dmavm on the hot path.
            let addr = IoEventAddress::Mmio(base + NOTIFY_OFFSET);
            vm.register_ioevent(evt, &addr, u32::try_from(i)?).with_context(|| {
                format!("{}: cannot register the notification of queue {i} with KVM", device.id)
            })?;
        }
        let transport = Arc::new(Mutex::new(transport));
        mmio.insert(transport.clone(), base, WINDOW_SIZE)
            .with_context(|| format!("placing {}", device.id))?;
        built.queues.push(QueueNotifications { id: device.id.clone(), transport, events });
    }
    Ok(built)
}

fn model(device: &Device) -> Result<Box<dyn VirtioDevice<GuestMemoryMmap>>> {
    Ok(match &device.kind {
        DeviceKind::Disk { path, readonly } => {
            let file = OpenOptions::new().read(true).write(!readonly).open(path).map_err(|e| {
                let how = if *readonly || e.kind() == std::io::ErrorKind::NotFound {
                    ""
                } else {
                    " for writing (add readonly=on for a read-only disk)"
                };
                anyhow::anyhow!("{}: cannot open disk {}{how}: {e}", device.id, path.display())
            })?;
            let config = BlockConfig {
                file,
                read_only: *readonly,
                id: device.id.clone(),
                access_platform: device.access_platform,
            };
            Box::new(Block::new(config).with_context(|| format!("{}: disk {}", device.id, path.display()))?)
        }
        DeviceKind::Rng => Box::new(Rng::new(RngConfig { access_platform: device.access_platform })),
        DeviceKind::Console => anyhow::bail!("{}: the console is built with its input", device.id),
    })
}

/// Processes one device's queue notifications on the event loop.
pub struct QueueNotifications {
    id: String,
    transport: Arc<Mutex<Transport>>,
    events: Vec<EventFd>,
}

impl std::fmt::Debug for QueueNotifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueNotifications").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MutEventSubscriber for QueueNotifications {
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
