//! Keeping the virtio queue notifications of one PCI segment registered
//! with KVM wherever the guest puts a device's BAR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dmavm_devices::pci::BarListener;
use dmavm_devices::virtio::pci::VIRTIO_PCI_BAR;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

/// Per PCI slot, the queue eventfds and their offsets in the virtio BAR.
type SlotEvents = HashMap<u8, (String, Vec<(EventFd, u64)>)>;

/// Re-registers the queue ioeventfds of a segment's devices when the guest
/// moves their virtio BAR (Linux reassigns BARs while enumerating), so
/// notifications stay exit-free wherever the BAR lives. One per segment:
/// slots are numbered per root bus.
pub struct NotifyEvents {
    vm: Arc<VmFd>,
    slots: Mutex<SlotEvents>,
}

impl std::fmt::Debug for NotifyEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyEvents").finish_non_exhaustive()
    }
}

impl NotifyEvents {
    /// No notifications recorded yet; registers them with `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm, slots: Mutex::new(HashMap::new()) }
    }

    /// Records the notifications of the device about to be added at `slot`
    /// (the root reports its initial placement while adding it).
    pub fn record(&self, slot: u8, id: &str, events: Vec<(EventFd, u64)>) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(slot, (id.to_string(), events));
        }
    }
}

impl NotifyEvents {
    /// Drops the notifications of the device unplugged from `slot` (after
    /// its BARs left the bus, which unregistered them).
    pub fn forget(&self, slot: u8) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&slot);
        }
    }
}

impl BarListener for NotifyEvents {
    fn bar_moved(&self, slot: u8, bar: u8, old: Option<u64>, new: Option<u64>) {
        if bar != VIRTIO_PCI_BAR {
            return;
        }
        let Ok(slots) = self.slots.lock() else { return };
        let Some((id, events)) = slots.get(&slot) else { return };
        for (evt, offset) in events {
            // Each queue has its own notify address: no data match needed.
            if let Some(base) = old {
                if let Err(e) =
                    self.vm.unregister_ioevent(evt, &IoEventAddress::Mmio(base + offset), NoDatamatch)
                {
                    log::warn!("{id}: cannot unregister a queue notification at {:#x}: {e}", base + offset);
                }
            }
            if let Some(base) = new {
                if let Err(e) =
                    self.vm.register_ioevent(evt, &IoEventAddress::Mmio(base + offset), NoDatamatch)
                {
                    log::warn!("{id}: cannot register a queue notification at {:#x}: {e}", base + offset);
                }
            }
        }
    }
}
