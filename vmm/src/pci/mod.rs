//! The PCI segments: one host bridge per `--pci-bridge` (and `pci0`), each
//! with its own root bus (host bridge at 00.0), BAR allocator over its own
//! windows, ECAM window, and queue-notification bookkeeping. Where each
//! decodes comes from the machine model, so the ACPI tables describe
//! exactly what runs. The legacy 0xCF8 ports reach segment 0 only, as on
//! real hardware (and as Linux assumes: `raw_pci_read()` takes them for
//! segment 0 only); every other segment is reached through its ECAM.

mod notify;

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::pci::{PciConfigIo, PciEcam, PciRoot, PciWindows, PCI_CONFIG_IO_LEN, PCI_CONFIG_IO_PORT};
use dmavm_devices::Bus;
use kvm_ioctls::VmFd;

pub use notify::NotifyEvents;

use dmavm_machine::Machine;

/// One PCI segment: its host bridge's root bus and what its devices need.
#[derive(Debug)]
pub struct PciSegment {
    /// The segment group number.
    pub segment: u16,
    /// The root-bus model.
    pub root: Arc<Mutex<PciRoot>>,
    /// Where device notification eventfds are recorded before a device is
    /// added.
    pub notify: Arc<NotifyEvents>,
}

/// Builds every host bridge of `machine` and puts its configuration-space
/// front ends on the buses: each segment's ECAM on `mmio`, the 0xCF8 ports
/// (segment 0's) on `pio`.
pub fn create(vm: &Arc<VmFd>, mmio: &Arc<Bus>, pio: &Bus, machine: &Machine) -> Result<Vec<PciSegment>> {
    let mut segments = Vec::with_capacity(machine.bridges.len());
    for (bridge, windows) in machine.pci_segments()? {
        let what = format!("PCI host bridge {} (segment {})", bridge.id, bridge.segment);
        let bar_windows = PciWindows { mem32: windows.mem32.clone(), mem64: Some(windows.mem64.clone()) };
        let mut root = PciRoot::new(mmio.clone(), bar_windows)
            .with_context(|| format!("creating the {what}"))?
            .with_segment(bridge.segment);
        let notify = Arc::new(NotifyEvents::new(vm.clone()));
        root.set_bar_listener(notify.clone());
        let root = Arc::new(Mutex::new(root));
        let ecam = PciEcam::new(root.clone(), windows.buses());
        let ecam_size = windows.ecam.end - windows.ecam.start;
        if ecam.window_size() != ecam_size {
            anyhow::bail!(
                "{what}: the ECAM model covers {:#x} bytes, not {ecam_size:#x}",
                ecam.window_size()
            );
        }
        mmio.insert(Arc::new(Mutex::new(ecam)), windows.ecam.start, ecam_size)
            .with_context(|| format!("placing the ECAM window of the {what}"))?;
        if bridge.segment == 0 {
            pio.insert(
                Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
                PCI_CONFIG_IO_PORT,
                PCI_CONFIG_IO_LEN,
            )
            .context("placing the PCI config ports")?;
        }
        segments.push(PciSegment { segment: bridge.segment, root, notify });
    }
    Ok(segments)
}
