//! The hot-plug controller's register block on the MMIO bus: its
//! interrupt raised through an irqfd on the controller's IOAPIC pin, and
//! the slots the guest ejects queued for the event loop, which tears the
//! devices down (the eject is written on a vCPU thread, whose seccomp
//! filter allows none of that).

// Only the x86_64 machine declares a controller (in ACPI); an arm64 VM
// knows the type of its ejects but builds none.
#![cfg_attr(target_arch = "aarch64", allow(dead_code))]

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::hotplug_events::{HotplugEvents, SIZE};
use dmavm_devices::Bus;
use dmavm_machine::{Machine, Placement};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::interrupts::IrqfdPin;

/// Most ejected slots waiting for the event loop: every slot of every
/// segment, so a guest writing ejects in a loop holds no more.
const MAX_PENDING_EJECTS: usize = 32 * 16;

/// Slots the guest ejected, as (segment, slot), and the event that wakes
/// the event loop for them.
pub struct Ejects {
    pending: Mutex<Vec<(u16, u8)>>,
    event: EventFd,
}

impl std::fmt::Debug for Ejects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ejects").finish_non_exhaustive()
    }
}

impl Ejects {
    fn new() -> Result<Self> {
        let event = EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).context("creating the eject event")?;
        Ok(Self { pending: Mutex::new(Vec::new()), event })
    }

    fn push(&self, segment: u16, slot: u8) {
        let Ok(mut pending) = self.pending.lock() else { return };
        if pending.len() < MAX_PENDING_EJECTS && !pending.contains(&(segment, slot)) {
            pending.push((segment, slot));
        }
        drop(pending);
        // Counter overflow only: the loop is woken already.
        let _ = self.event.write(1);
    }

    /// The slots ejected since the last call.
    pub fn take(&self) -> Vec<(u16, u8)> {
        // WouldBlock: nothing new since the last read.
        let _ = self.event.read();
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }

    /// The event the loop watches.
    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

/// Puts `machine`'s hot-plug controller on `mmio`, its interrupt an edge
/// on its IOAPIC pin; returns it and where the guest's ejects arrive.
pub fn create(vm: &VmFd, mmio: &Bus, machine: &Machine) -> Result<(Arc<Mutex<HotplugEvents>>, Arc<Ejects>)> {
    let declared = machine.hotplug_controller();
    let line = IrqfdPin::new(vm, declared.gsi).context("the hot-plug controller's interrupt")?;
    let present: Vec<(u16, u8)> = machine
        .devices
        .iter()
        .filter_map(|d| match d.placement {
            Placement::Pci { segment, slot } if declared.segments.contains(&segment) => Some((segment, slot)),
            _ => None,
        })
        .collect();
    let ejects = Arc::new(Ejects::new()?);
    let queue = ejects.clone();
    let signal = move || {
        if let Err(e) = line.trigger() {
            log::warn!("hot-plug controller: cannot raise its interrupt: {e}");
        }
    };
    let block = HotplugEvents::new(&declared.segments, &present, signal, move |segment, slot| {
        queue.push(segment, slot)
    })
    .context("the hot-plug controller's slots")?;
    let block = Arc::new(Mutex::new(block));
    mmio.insert(block.clone(), declared.base, SIZE).context("placing the hot-plug controller")?;
    Ok((block, ejects))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A guest writing ejects in a loop makes dmavm hold at most one entry
    /// per slot, and each wakes the loop.
    #[test]
    fn ejects_wait_once_each_and_are_bounded() {
        let ejects = Ejects::new().unwrap();
        for _ in 0..3 {
            ejects.push(1, 4);
        }
        assert_eq!(ejects.take(), vec![(1, 4)]);
        assert!(ejects.take().is_empty());
        for i in 0..10_000u32 {
            ejects.push((i / 32 % 40) as u16, (i % 32) as u8);
        }
        assert_eq!(ejects.take().len(), MAX_PENDING_EJECTS);
    }
}
