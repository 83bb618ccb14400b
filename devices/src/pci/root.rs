//! A root bus: devices by number, the host bridge, BAR allocation and the
//! placement of decoding BARs on the MMIO bus. One per PCI segment; roots
//! share nothing but the MMIO bus, each allocating from its own windows.
//!
//! The root is the only thing that moves BARs on the bus. After every
//! configuration write it reads the function's command register and BARs
//! back (what the hardware would decode) and, where that differs from what
//! is mapped, removes the old range, inserts the new one and tells the
//! [`BarListener`]. A BAR decodes when memory space is enabled and it holds
//! a non-zero address whose range does not wrap; a BAR the guest moved on
//! top of something else on the bus is left unmapped (logged), exactly like
//! a BAR with decoding disabled.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::config::{
    BarKind, PciBar, PciConfigSpace, PciIds, COMMAND_MEMORY, PCI_BAR0, PCI_COMMAND, PCI_EXT_CONFIG_SIZE,
};
use super::{PciDevice, PciError, SharedPciDevice};
use crate::bus::{Bus, BusDevice};

/// Device numbers on the root bus.
pub const PCI_SLOTS: usize = 32;
/// Host bridge vendor ID: Red Hat's, as used by the generic virtual PCIe
/// host bridge (no guest driver binds to it; Linux only needs a class
/// 0x0600 function at 00:00.0).
pub const HOST_BRIDGE_VENDOR_ID: u16 = 0x1b36;
/// Host bridge device ID ("PCIe host bridge").
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x0008;
/// Class code of a host bridge.
pub const HOST_BRIDGE_CLASS: u32 = 0x06_00_00;

const NUM_BARS: usize = 6;

/// The host bridge at 00:00.0: a header and nothing else.
///
/// The bridge's DMA properties (`coherent`, `direct-ram-access`) are
/// firmware-level facts (ACPI `_CCA` and VIOT/DMAR scope on the host
/// bridge); nothing in configuration space carries them.
#[derive(Debug, Clone)]
pub struct HostBridge {
    config: PciConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    /// A host bridge with dmavm's IDs.
    pub fn new() -> Self {
        Self {
            config: PciConfigSpace::new(PciIds {
                vendor_id: HOST_BRIDGE_VENDOR_ID,
                device_id: HOST_BRIDGE_DEVICE_ID,
                revision: 0,
                class_code: HOST_BRIDGE_CLASS,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
            }),
        }
    }
}

impl PciDevice for HostBridge {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn bars(&self) -> Vec<PciBar> {
        Vec::new()
    }

    fn read_bar(&mut self, _index: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write_bar(&mut self, _index: u8, _offset: u64, _data: &[u8]) {}
}

/// Told whenever a BAR starts or stops decoding, or moves. The VMM uses it
/// to move what KVM knows about the BAR (ioeventfds on notify addresses).
///
/// Called on a vCPU thread with the root locked: an implementation must not
/// lock the root or any PCI device.
pub trait BarListener: Send + Sync {
    /// BAR `bar` of device `slot` decoded at `old` (if any) and now decodes
    /// at `new` (if any); the bus mapping has already moved.
    fn bar_moved(&self, slot: u8, bar: u8, old: Option<u64>, new: Option<u64>);
}

/// The guest-physical windows BARs are allocated from (the VMM describes
/// the same windows to the guest in the host bridge's `_CRS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciWindows {
    /// Below 4 GiB: 32-bit BARs, and 64-bit BARs when there is no
    /// `mem64`.
    pub mem32: Range<u64>,
    /// Above 4 GiB (typically above RAM): 64-bit BARs.
    pub mem64: Option<Range<u64>>,
}

/// The bus-side face of one BAR: forwards accesses to the device.
struct BarRegion {
    device: SharedPciDevice,
    index: u8,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match self.device.lock() {
            Ok(mut d) => d.read_bar(self.index, offset, data),
            Err(_) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Ok(mut d) = self.device.lock() {
            d.write_bar(self.index, offset, data);
        }
    }
}

struct Slot {
    device: SharedPciDevice,
    bars: Vec<PciBar>,
    /// Where each BAR is mapped on the MMIO bus, by BAR index.
    mapped: [Option<u64>; NUM_BARS],
}

/// Bus 0 of one PCI segment.
pub struct PciRoot {
    segment: u16,
    slots: Vec<Option<Slot>>,
    mmio: Arc<Bus>,
    windows: PciWindows,
    listener: Option<Arc<dyn BarListener>>,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let devices: Vec<_> =
            self.slots.iter().enumerate().filter_map(|(n, s)| s.as_ref().map(|s| (n, s.mapped))).collect();
        f.debug_struct("PciRoot")
            .field("segment", &self.segment)
            .field("windows", &self.windows)
            .field("devices", &devices)
            .finish_non_exhaustive()
    }
}

/// Rounds `x` up to `align` (a power of two).
fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// The lowest `size`-aligned range of `size` bytes in `window` that
/// overlaps none of `taken`: where the guest moved other BARs, and what
/// unplugged devices left, are both respected.
pub(super) fn first_fit(window: &Range<u64>, size: u64, taken: &[Range<u64>]) -> Option<u64> {
    let mut addr = align_up(window.start, size)?;
    loop {
        let end = addr.checked_add(size).filter(|&e| e <= window.end)?;
        match taken.iter().filter(|t| t.start < end && addr < t.end).map(|t| t.end).max() {
            Some(after) => addr = align_up(after, size)?,
            None => return Some(addr),
        }
    }
}

/// Whether a configuration access is one the root forwards: 1, 2 or 4
/// bytes, naturally aligned (so it never crosses a dword), inside the 4 KiB
/// function space.
fn valid_access(register: u16, len: usize) -> bool {
    matches!(len, 1 | 2 | 4)
        && usize::from(register) % len == 0
        && usize::from(register) + len <= PCI_EXT_CONFIG_SIZE
}

impl PciRoot {
    /// A root bus with the host bridge at 00:00.0, placing BARs from
    /// `windows` on `mmio`; segment 0 unless [`Self::with_segment`] says
    /// otherwise.
    pub fn new(mmio: Arc<Bus>, windows: PciWindows) -> Result<Self, PciError> {
        let bad = |r: &Range<u64>| PciError::InvalidWindow { start: r.start, end: r.end };
        if windows.mem32.start >= windows.mem32.end || windows.mem32.end > 1 << 32 {
            return Err(bad(&windows.mem32));
        }
        if let Some(w) = &windows.mem64 {
            if w.start >= w.end {
                return Err(bad(w));
            }
        }
        let mut slots: Vec<Option<Slot>> = (0..PCI_SLOTS).map(|_| None).collect();
        let bridge: SharedPciDevice = Arc::new(Mutex::new(HostBridge::new()));
        slots[0] = Some(Slot { device: bridge, bars: Vec::new(), mapped: [None; NUM_BARS] });
        Ok(Self { segment: 0, slots, mmio, windows, listener: None })
    }

    /// The same root as bus 0 of PCI segment `segment`. The segment only
    /// names the functions in messages: configuration accesses reach a root
    /// through its own front end (ECAM window), so they carry no segment.
    pub fn with_segment(mut self, segment: u16) -> Self {
        self.segment = segment;
        self
    }

    /// The PCI segment this root bus belongs to.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// Sets who hears about BAR moves (including the initial placement by
    /// [`Self::add_device_at`], so set it first).
    pub fn set_bar_listener(&mut self, listener: Arc<dyn BarListener>) {
        self.listener = Some(listener);
    }

    /// Plugs `device` into the lowest free device number (see
    /// [`Self::add_device_at`]) and returns that number.
    pub fn add_device(&mut self, device: SharedPciDevice) -> Result<u8, PciError> {
        let n = (1..PCI_SLOTS).find(|&i| self.slots[i].is_none()).ok_or(PciError::NoFreeSlot)?;
        // `n` < 32.
        self.add_device_at(n as u8, device)?;
        Ok(n as u8)
    }

    /// Plugs `device` in as device `slot_number` (1-31), set up as firmware
    /// would: each BAR is allocated (naturally aligned; 64-bit BARs from the
    /// 64-bit window when there is one), programmed and, with memory space
    /// enabled, mapped on the MMIO bus. The listener hears about these
    /// initial placements, so a VMM that keys its ioeventfd bookkeeping by
    /// device number prepares it before this call. On error nothing stays
    /// mapped or allocated.
    pub fn add_device_at(&mut self, slot_number: u8, device: SharedPciDevice) -> Result<(), PciError> {
        let n = usize::from(slot_number);
        if n == 0 || self.slots.get(n).is_none_or(Option::is_some) {
            return Err(PciError::SlotUnavailable(slot_number));
        }
        let bars = device.lock().map_err(|_| PciError::Poisoned)?.bars();
        let mut taken = self.mapped_ranges();
        let mut placed = Vec::with_capacity(bars.len());
        for bar in &bars {
            if !bar.size.is_power_of_two() || usize::from(bar.index) >= NUM_BARS {
                return Err(PciError::InvalidBar { index: bar.index, size: bar.size });
            }
            let window = match (&self.windows.mem64, bar.kind) {
                (Some(w), BarKind::Memory64) => w,
                _ => &self.windows.mem32,
            };
            let addr = first_fit(window, bar.size, &taken).ok_or(PciError::NoBarSpace {
                slot: slot_number,
                index: bar.index,
                size: bar.size,
            })?;
            taken.push(addr..addr + bar.size);
            placed.push((*bar, addr));
        }
        {
            let mut dev = device.lock().map_err(|_| PciError::Poisoned)?;
            for (bar, addr) in &placed {
                let reg = PCI_BAR0 + 4 * u16::from(bar.index);
                dev.write_config(reg, &(*addr as u32).to_le_bytes());
                if bar.kind == BarKind::Memory64 {
                    dev.write_config(reg + 4, &((*addr >> 32) as u32).to_le_bytes());
                }
            }
            let mut cmd = [0; 2];
            dev.read_config(PCI_COMMAND, &mut cmd);
            dev.write_config(PCI_COMMAND, &(u16::from_le_bytes(cmd) | COMMAND_MEMORY).to_le_bytes());
        }
        self.slots[n] = Some(Slot { device, bars, mapped: [None; NUM_BARS] });
        let failed = self.sync_bars(n);
        if let Some(&(index, addr)) = failed.first() {
            self.unmap_all(n);
            self.slots[n] = None;
            return Err(PciError::BarPlacement { slot: slot_number, index, addr });
        }
        Ok(())
    }

    /// Unplugs the device at `slot_number` (1-31): its BARs leave the bus
    /// (the listener hears each go) and the slot is free again. The device
    /// is returned for its owner to tear down. A later device may take the
    /// freed BAR space.
    pub fn remove_device(&mut self, slot_number: u8) -> Result<SharedPciDevice, PciError> {
        let n = usize::from(slot_number);
        if n == 0 || self.slots.get(n).is_none_or(Option::is_none) {
            return Err(PciError::SlotUnavailable(slot_number));
        }
        self.unmap_all(n);
        let slot = self.slots[n].take().ok_or(PciError::SlotUnavailable(slot_number))?;
        Ok(slot.device)
    }

    /// The bus ranges every BAR of every device decodes now.
    fn mapped_ranges(&self) -> Vec<Range<u64>> {
        self.slots
            .iter()
            .flatten()
            .flat_map(|s| {
                s.bars.iter().filter_map(|b| {
                    let base = s.mapped.get(usize::from(b.index)).copied().flatten()?;
                    Some(base..base.saturating_add(b.size))
                })
            })
            .collect()
    }

    /// The BARs of device `slot` and where each is mapped now.
    pub fn bar_mappings(&self, slot: u8) -> Vec<(PciBar, Option<u64>)> {
        let Some(s) = self.slots.get(usize::from(slot)).and_then(Option::as_ref) else {
            return Vec::new();
        };
        s.bars.iter().map(|b| (*b, s.mapped.get(usize::from(b.index)).copied().flatten())).collect()
    }

    fn slot(&self, bus: u8, device: u8, function: u8) -> Option<&Slot> {
        if bus != 0 || function != 0 {
            return None;
        }
        self.slots.get(usize::from(device)).and_then(Option::as_ref)
    }

    /// A configuration read of `register` of bus/device/function: all-ones
    /// for an absent function or a malformed access.
    pub fn config_read(&self, bus: u8, device: u8, function: u8, register: u16, data: &mut [u8]) {
        data.fill(0xff);
        if !valid_access(register, data.len()) {
            return;
        }
        if let Some(slot) = self.slot(bus, device, function) {
            if let Ok(mut d) = slot.device.lock() {
                d.read_config(register, data);
            }
        }
    }

    /// A configuration write; dropped for an absent function or a malformed
    /// access. Moves the function's BARs on the bus if the write changed
    /// what they decode.
    pub fn config_write(&mut self, bus: u8, device: u8, function: u8, register: u16, data: &[u8]) {
        if !valid_access(register, data.len()) {
            return;
        }
        let Some(slot) = self.slot(bus, device, function) else { return };
        match slot.device.lock() {
            Ok(mut d) => d.write_config(register, data),
            Err(_) => return,
        }
        self.sync_bars(usize::from(device));
    }

    /// Where each BAR of device `n` should decode now, from its registers.
    fn decoded(slot: &Slot) -> Option<Vec<Option<u64>>> {
        let mut dev = slot.device.lock().ok()?;
        let mut read32 = |reg: u16| {
            let mut b = [0; 4];
            dev.read_config(reg, &mut b);
            u32::from_le_bytes(b)
        };
        let enabled = read32(PCI_COMMAND) as u16 & COMMAND_MEMORY != 0;
        let decoded = slot
            .bars
            .iter()
            .map(|bar| {
                if !enabled {
                    return None;
                }
                let reg = PCI_BAR0 + 4 * u16::from(bar.index);
                let mut addr = u64::from(read32(reg) & !0xf);
                if bar.kind == BarKind::Memory64 {
                    addr |= u64::from(read32(reg + 4)) << 32;
                }
                Some(addr).filter(|&a| a != 0 && a.checked_add(bar.size).is_some())
            })
            .collect();
        Some(decoded)
    }

    /// Brings the bus mapping of device `n`'s BARs in line with what they
    /// decode. Returns the BARs that should decode but could not be placed.
    fn sync_bars(&mut self, n: usize) -> Vec<(u8, u64)> {
        let Some(slot) = self.slots.get_mut(n).and_then(Option::as_mut) else { return Vec::new() };
        let Some(wanted) = Self::decoded(slot) else { return Vec::new() };
        let mut failed = Vec::new();
        for (bar, want) in slot.bars.iter().zip(wanted) {
            let Some(current) = slot.mapped.get_mut(usize::from(bar.index)) else { continue };
            if *current == want {
                continue;
            }
            let old = current.take();
            if let Some(old) = old {
                self.mmio.remove(old);
            }
            if let Some(new) = want {
                let region =
                    Arc::new(Mutex::new(BarRegion { device: slot.device.clone(), index: bar.index }));
                match self.mmio.insert(region, new, bar.size) {
                    Ok(()) => *current = Some(new),
                    Err(e) => {
                        crate::guest_log!(static log::Level::Warn, "PCI {:04x}:00:{n:02x}.0: BAR {} left unmapped: {e}", self.segment, bar.index);
                        failed.push((bar.index, new));
                    }
                }
            }
            if old != *current {
                if let Some(listener) = &self.listener {
                    // `n` < 32.
                    listener.bar_moved(n as u8, bar.index, old, *current);
                }
            }
        }
        failed
    }

    /// Removes every bus mapping of device `n` (telling the listener).
    fn unmap_all(&mut self, n: usize) {
        let Some(slot) = self.slots.get_mut(n).and_then(Option::as_mut) else { return };
        for bar in &slot.bars {
            let Some(current) = slot.mapped.get_mut(usize::from(bar.index)) else { continue };
            if let Some(old) = current.take() {
                self.mmio.remove(old);
                if let Some(listener) = &self.listener {
                    listener.bar_moved(n as u8, bar.index, Some(old), None);
                }
            }
        }
    }
}
