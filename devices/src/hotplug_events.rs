//! The hot-plug event registers: a small MMIO block through which the VMM
//! tells the guest's firmware methods that the power button was pressed,
//! that a device arrived in a PCI slot or should leave it, and learns
//! which slots the guest ejected. The firmware side (the AML that reads
//! these registers) is the machine model's to describe; the offsets below
//! are the contract, checked against it there.
//!
//! Every register is 32 bits wide; narrower or misaligned accesses read
//! as zero and are ignored when written. Segments are the PCI segments
//! the block was built with; a selected segment it does not serve reads
//! as empty and ignores ejects.

use std::collections::BTreeMap;

use crate::bus::BusDevice;

/// Pending events, cleared by the read.
pub const EVENTS: u64 = 0x00;
/// The PCI segment the next four registers are about (write).
pub const SEGMENT: u64 = 0x04;
/// Occupied device numbers of the selected segment (read).
pub const PRESENT: u64 = 0x08;
/// Device numbers that received a device since the last read (read, cleared by it).
pub const INSERTED: u64 = 0x0c;
/// Device numbers whose device the VMM asks the guest to eject (read, cleared by it).
pub const REMOVING: u64 = 0x10;
/// Device numbers the guest ejected (write).
pub const EJECT: u64 = 0x14;
/// Bytes of the block.
pub const SIZE: u64 = 0x18;
/// [`EVENTS`] bit: the power button was pressed.
pub const POWER_BUTTON: u32 = 1 << 0;
/// [`EVENTS`] bit: some segment has [`INSERTED`] or [`REMOVING`] bits.
pub const PCI_SLOTS: u32 = 1 << 1;

/// Slot bits of one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slots {
    present: u32,
    inserted: u32,
    removing: u32,
}

/// The register block. `signal` raises the block's (edge) interrupt;
/// `ejected` hears each slot the guest ejected, as (segment, slot).
pub struct HotplugEvents {
    events: u32,
    selected: u16,
    segments: BTreeMap<u16, Slots>,
    signal: Box<dyn Fn() + Send>,
    ejected: Box<dyn Fn(u16, u8) + Send>,
}

impl std::fmt::Debug for HotplugEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotplugEvents")
            .field("events", &self.events)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

/// A slot number that has no bit (device numbers are 0-31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The block does not serve this segment.
    #[error("PCI segment {0} is not hot-pluggable")]
    Segment(u16),
    /// No such device number.
    #[error("device number {0} does not exist (0-31)")]
    Slot(u8),
}

impl HotplugEvents {
    /// A block serving `segments`, with `present` = (segment, slot) of the
    /// devices there at boot.
    pub fn new(
        segments: &[u16],
        present: &[(u16, u8)],
        signal: impl Fn() + Send + 'static,
        ejected: impl Fn(u16, u8) + Send + 'static,
    ) -> Result<Self, SlotError> {
        let mut block = Self {
            events: 0,
            selected: 0,
            segments: segments.iter().map(|&s| (s, Slots::default())).collect(),
            signal: Box::new(signal),
            ejected: Box::new(ejected),
        };
        for &(segment, slot) in present {
            block.slots(segment, slot)?.0.present |= 1 << slot;
        }
        Ok(block)
    }

    fn slots(&mut self, segment: u16, slot: u8) -> Result<(&mut Slots, u32), SlotError> {
        if slot > 31 {
            return Err(SlotError::Slot(slot));
        }
        let slots = self.segments.get_mut(&segment).ok_or(SlotError::Segment(segment))?;
        Ok((slots, 1 << slot))
    }

    fn raise(&mut self, event: u32) {
        self.events |= event;
        (self.signal)();
    }

    /// The power button was pressed.
    pub fn press_power_button(&mut self) {
        self.raise(POWER_BUTTON);
    }

    /// A device was put in `slot`: present, and announced.
    pub fn device_added(&mut self, segment: u16, slot: u8) -> Result<(), SlotError> {
        let (slots, bit) = self.slots(segment, slot)?;
        slots.present |= bit;
        slots.inserted |= bit;
        slots.removing &= !bit;
        self.raise(PCI_SLOTS);
        Ok(())
    }

    /// Asks the guest to eject the device in `slot`; it stays present
    /// until the guest writes its bit to [`EJECT`].
    pub fn request_removal(&mut self, segment: u16, slot: u8) -> Result<(), SlotError> {
        let (slots, bit) = self.slots(segment, slot)?;
        slots.removing |= bit;
        slots.inserted &= !bit;
        self.raise(PCI_SLOTS);
        Ok(())
    }

    /// Whether a device is in `slot` (not yet ejected).
    pub fn is_present(&self, segment: u16, slot: u8) -> bool {
        slot <= 31 && self.segments.get(&segment).is_some_and(|s| s.present & (1 << slot) != 0)
    }

    fn selected(&mut self) -> Option<&mut Slots> {
        self.segments.get_mut(&self.selected)
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            EVENTS => std::mem::take(&mut self.events),
            SEGMENT => u32::from(self.selected),
            PRESENT => self.selected().map_or(0, |s| s.present),
            INSERTED => self.selected().map_or(0, |s| std::mem::take(&mut s.inserted)),
            REMOVING => self.selected().map_or(0, |s| std::mem::take(&mut s.removing)),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            SEGMENT => self.selected = u16::try_from(value).unwrap_or(u16::MAX),
            EJECT => {
                let segment = self.selected;
                let Some(slots) = self.selected() else { return };
                // Only occupied slots can be ejected; each is reported once.
                let ejected = value & slots.present;
                slots.present &= !ejected;
                slots.removing &= !ejected;
                for slot in (0..32u8).filter(|s| ejected & (1 << s) != 0) {
                    (self.ejected)(segment, slot);
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for HotplugEvents {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match data.len() {
            4 if offset % 4 == 0 => self.read_register(offset),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(bytes), 0) = (<[u8; 4]>::try_from(data), offset % 4) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    type Ejected = Arc<Mutex<Vec<(u16, u8)>>>;

    fn block() -> (HotplugEvents, Arc<AtomicU32>, Ejected) {
        let signals = Arc::new(AtomicU32::new(0));
        let ejected: Ejected = Arc::default();
        let (s, e) = (signals.clone(), ejected.clone());
        let b = HotplugEvents::new(
            &[1, 3],
            &[(1, 2)],
            move || {
                s.fetch_add(1, Ordering::Relaxed);
            },
            move |seg, slot| e.lock().unwrap().push((seg, slot)),
        )
        .unwrap();
        (b, signals, ejected)
    }

    fn read(b: &mut HotplugEvents, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        b.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write(b: &mut HotplugEvents, offset: u64, value: u32) {
        b.write(offset, &value.to_le_bytes());
    }

    #[test]
    fn arrival_then_eject() {
        let (mut b, signals, ejected) = block();
        write(&mut b, SEGMENT, 1);
        assert_eq!(read(&mut b, PRESENT), 1 << 2, "the boot-time device");
        b.device_added(1, 5).unwrap();
        assert_eq!(signals.load(Ordering::Relaxed), 1);
        assert_eq!(read(&mut b, EVENTS), PCI_SLOTS);
        assert_eq!(read(&mut b, EVENTS), 0, "cleared by the read");
        assert_eq!(read(&mut b, INSERTED), 1 << 5);
        assert_eq!(read(&mut b, INSERTED), 0);
        assert_eq!(read(&mut b, PRESENT), (1 << 2) | (1 << 5));
        b.request_removal(1, 5).unwrap();
        assert_eq!(read(&mut b, REMOVING), 1 << 5);
        assert!(b.is_present(1, 5), "present until the guest ejects it");
        // An eject of an empty slot and of another segment's: nothing.
        write(&mut b, EJECT, (1 << 5) | (1 << 9));
        assert_eq!(*ejected.lock().unwrap(), [(1, 5)]);
        assert!(!b.is_present(1, 5));
        write(&mut b, EJECT, 1 << 5);
        assert_eq!(ejected.lock().unwrap().len(), 1, "reported once");
    }

    #[test]
    fn segments_are_separate_and_unknown_ones_empty() {
        let (mut b, _, ejected) = block();
        b.device_added(3, 1).unwrap();
        write(&mut b, SEGMENT, 1);
        assert_eq!(read(&mut b, INSERTED), 0);
        write(&mut b, SEGMENT, 3);
        assert_eq!(read(&mut b, INSERTED), 1 << 1);
        write(&mut b, SEGMENT, 0x7777_0000);
        assert_eq!(read(&mut b, PRESENT), 0);
        write(&mut b, EJECT, u32::MAX);
        assert!(ejected.lock().unwrap().is_empty());
        assert_eq!(b.device_added(0, 1), Err(SlotError::Segment(0)));
        assert_eq!(b.device_added(1, 32), Err(SlotError::Slot(32)));
    }

    #[test]
    fn power_button_and_odd_accesses() {
        let (mut b, signals, _) = block();
        b.press_power_button();
        assert_eq!(signals.load(Ordering::Relaxed), 1);
        let mut byte = [0xaau8; 1];
        b.read(EVENTS, &mut byte);
        assert_eq!(byte, [0], "a narrow read does not consume the events");
        let mut wide = [0xaau8; 8];
        b.read(EVENTS, &mut wide);
        assert_eq!(wide, [0; 8]);
        assert_eq!(read(&mut b, EVENTS), POWER_BUTTON);
        b.write(SEGMENT, &[1]);
        assert_eq!(read(&mut b, SEGMENT), 0, "narrow writes are ignored");
        assert_eq!(read(&mut b, SIZE + 4), 0);
    }
}
