//! The PCI host bridge of segment 0: its config-space front ends (ECAM and
//! the 0xCF8 ports), its BAR windows, and keeping the virtio queue
//! notifications registered with KVM wherever the guest puts a BAR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::pci::{
    BarListener, PciConfigIo, PciEcam, PciRoot, PciWindows, ECAM_BUS_SIZE, PCI_CONFIG_IO_LEN,
    PCI_CONFIG_IO_PORT,
};
use dmavm_devices::virtio::pci::VIRTIO_PCI_BAR;
use dmavm_devices::Bus;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::layout::{pci_mem64_window, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MEM32_END, PCI_MEM32_START};

/// The host bridge and what the devices on it need.
#[derive(Debug)]
pub struct HostBridge {
    /// The bus-0 model.
    pub root: Arc<Mutex<PciRoot>>,
    /// Where device notification eventfds are recorded before a device is
    /// added.
    pub notify: Arc<NotifyEvents>,
}

/// Builds the host bridge and puts its config-space front ends on the buses.
pub fn create(vm: &Arc<VmFd>, mmio: &Arc<Bus>, pio: &Bus, memory: u64) -> Result<HostBridge> {
    let windows = PciWindows { mem32: PCI_MEM32_START..PCI_MEM32_END, mem64: Some(pci_mem64_window(memory)) };
    let mut root = PciRoot::new(mmio.clone(), windows).context("creating the PCI host bridge")?;
    let notify = Arc::new(NotifyEvents { vm: vm.clone(), slots: Mutex::new(HashMap::new()) });
    root.set_bar_listener(notify.clone());
    let root = Arc::new(Mutex::new(root));
    let buses = u16::try_from(PCI_ECAM_SIZE / ECAM_BUS_SIZE)?;
    mmio.insert(Arc::new(Mutex::new(PciEcam::new(root.clone(), buses))), PCI_ECAM_START, PCI_ECAM_SIZE)
        .context("placing the PCI ECAM window")?;
    pio.insert(Arc::new(Mutex::new(PciConfigIo::new(root.clone()))), PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_LEN)
        .context("placing the PCI config ports")?;
    Ok(HostBridge { root, notify })
}

/// Per PCI slot, the queue eventfds and their offsets in the virtio BAR.
type SlotEvents = HashMap<u8, (String, Vec<(EventFd, u64)>)>;

/// Re-registers a device's queue ioeventfds when the guest moves its
/// virtio BAR (Linux reassigns BARs while enumerating), so notifications
/// stay exit-free wherever the BAR lives.
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
    /// Records the notifications of the device about to be added at `slot`
    /// (the root reports its initial placement while adding it).
    pub fn record(&self, slot: u8, id: &str, events: Vec<(EventFd, u64)>) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(slot, (id.to_string(), events));
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
