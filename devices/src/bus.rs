//! Address-range dispatch of guest port-I/O and MMIO accesses to devices.
//!
//! One [`Bus`] serves port I/O and another MMIO. Devices are registered with a
//! base and a length; a vCPU exit looks the address up and forwards the
//! access with the offset into the device's range. Ranges never overlap, and
//! an access must lie wholly inside one range: the guest controls the address
//! and the size, so a straddling or unmapped access is reported to the caller
//! instead of being forwarded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device that answers guest accesses on a bus.
///
/// `offset` is relative to the base the device was registered at; `data` is
/// the access (1, 2, 4 or 8 bytes for a CPU access, little endian).
pub trait BusDevice: Send {
    /// A guest read: fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and its owner (the event loop may feed
/// it input while vCPUs access it).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why an access or a registration failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Nothing is registered at that address (or the access spills past the
    /// end of the device's range).
    #[error("no device at {addr:#x} (access of {len} bytes)")]
    Unmapped {
        /// Guest address of the access.
        addr: u64,
        /// Access size in bytes.
        len: usize,
    },
    /// A new range would overlap one already registered.
    #[error("range {base:#x}+{len:#x} overlaps the device at {other:#x}")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
        /// Base of the range it collides with.
        other: u64,
    },
    /// A zero-length range, or one that wraps around the address space.
    #[error("invalid range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// A device's lock was poisoned by a panic on another thread.
    #[error("device at {base:#x} is unusable after a panic on another thread")]
    Poisoned {
        /// Base of the device's range.
        base: u64,
    },
}

struct Entry {
    len: u64,
    device: SharedDevice,
}

/// A set of non-overlapping address ranges, each owned by one device.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        if let Ok(ranges) = self.ranges.read() {
            for (base, e) in ranges.iter() {
                list.entry(&format_args!("{:#x}+{:#x}", base, e.len));
            }
        }
        list.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `device` for `[base, base + len)`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(BusError::InvalidRange { base, len })?;
        let mut ranges = self.ranges.write().map_err(|_| BusError::Poisoned { base })?;
        // The only candidates for overlap are the last range starting below
        // `end` (it may extend into the new one).
        if let Some((&other, e)) = ranges.range(..end).next_back() {
            if other.saturating_add(e.len) > base {
                return Err(BusError::Overlap { base, len, other });
            }
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the range starting at `base`, returning its device.
    pub fn remove(&self, base: u64) -> Option<SharedDevice> {
        self.ranges.write().ok()?.remove(&base).map(|e| e.device)
    }

    /// Every registered range as `(base, length)`, by base: what a guest
    /// that moves PCI BARs around must not make grow.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.read().map(|r| r.iter().map(|(&base, e)| (base, e.len)).collect()).unwrap_or_default()
    }

    fn resolve(&self, addr: u64, len: usize) -> Result<(u64, SharedDevice), BusError> {
        let unmapped = BusError::Unmapped { addr, len };
        let ranges = self.ranges.read().map_err(|_| unmapped.clone())?;
        let (&base, e) = ranges.range(..=addr).next_back().ok_or(unmapped.clone())?;
        let offset = addr - base;
        // The access must fit inside the range: `len` is at most 8 for a CPU
        // access, but the check must hold for any length.
        if offset.checked_add(len as u64).is_none_or(|end| end > e.len) {
            return Err(unmapped);
        }
        Ok((offset, e.device.clone()))
    }

    /// Forwards a guest read; on error `data` is left untouched.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        let (offset, dev) = self.resolve(addr, data.len())?;
        let mut dev = dev.lock().map_err(|_| BusError::Poisoned { base: addr - offset })?;
        dev.read(offset, data);
        Ok(())
    }

    /// Forwards a guest write.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        let (offset, dev) = self.resolve(addr, data.len())?;
        let mut dev = dev.lock().map_err(|_| BusError::Poisoned { base: addr - offset })?;
        dev.write(offset, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access so tests can see the offset it arrived with.
    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn recorder() -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder::default()))
    }

    #[test]
    fn dispatches_with_offset() {
        let bus = Bus::new();
        let dev = recorder();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        bus.write(0x3fa, &[7]).unwrap();
        assert_eq!(dev.lock().unwrap().last_write, Some((2, vec![7])));
        let mut b = [0u8; 2];
        bus.read(0x3fd, &mut b).unwrap();
        assert_eq!(b, [5, 5]);
    }

    #[test]
    fn rejects_unmapped_and_straddling_accesses() {
        let bus = Bus::new();
        bus.insert(recorder(), 0x1000, 0x10).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(bus.read(0xfff, &mut b[..1]), Err(BusError::Unmapped { addr: 0xfff, len: 1 }));
        assert_eq!(bus.read(0x100e, &mut b), Err(BusError::Unmapped { addr: 0x100e, len: 4 }));
        assert_eq!(bus.write(0x1010, &[0]), Err(BusError::Unmapped { addr: 0x1010, len: 1 }));
        assert_eq!(bus.read(u64::MAX, &mut b), Err(BusError::Unmapped { addr: u64::MAX, len: 4 }));
        assert!(bus.read(0x100c, &mut b).is_ok());
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let bus = Bus::new();
        bus.insert(recorder(), 0x100, 0x100).unwrap();
        assert!(matches!(bus.insert(recorder(), 0x1ff, 1), Err(BusError::Overlap { .. })));
        assert!(matches!(bus.insert(recorder(), 0x80, 0x81), Err(BusError::Overlap { .. })));
        assert!(matches!(bus.insert(recorder(), 0x0, 0), Err(BusError::InvalidRange { .. })));
        assert!(matches!(bus.insert(recorder(), u64::MAX, 2), Err(BusError::InvalidRange { .. })));
        bus.insert(recorder(), 0x80, 0x80).unwrap();
        bus.insert(recorder(), 0x200, 1).unwrap();
        assert!(bus.remove(0x200).is_some());
        assert!(bus.remove(0x200).is_none());
    }
}
