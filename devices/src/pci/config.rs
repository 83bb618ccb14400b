//! The type 0 configuration header, BAR registers and the capability list
//! (PCI Local Bus 3.0, 6.1-6.7), kept as bytes with a per-byte write mask.
//!
//! Every guest write goes through the mask, byte by byte, so any width and
//! alignment behave like the hardware registers: read-only bits keep their
//! value, and BAR sizing falls out of the mask (writing all-ones to a BAR
//! reads back the address bits the BAR decodes, i.e. the size mask, with the
//! read-only type bits below them).

use super::PciError;

/// Size of the conventional configuration space.
pub const PCI_CONFIG_SIZE: usize = 256;
/// Size of the PCI Express (ECAM) configuration space of one function.
pub const PCI_EXT_CONFIG_SIZE: usize = 4096;

/// Vendor ID register.
pub const PCI_VENDOR_ID: u16 = 0x00;
/// Device ID register.
pub const PCI_DEVICE_ID: u16 = 0x02;
/// Command register.
pub const PCI_COMMAND: u16 = 0x04;
/// Status register.
pub const PCI_STATUS: u16 = 0x06;
/// Revision ID (byte 0) and class code (bytes 1-3).
pub const PCI_CLASS_REVISION: u16 = 0x08;
/// Header type register.
pub const PCI_HEADER_TYPE: u16 = 0x0e;
/// First BAR register.
pub const PCI_BAR0: u16 = 0x10;
/// Subsystem vendor ID register.
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
/// Subsystem ID register.
pub const PCI_SUBSYSTEM_ID: u16 = 0x2e;
/// Capabilities pointer.
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Interrupt line register.
const PCI_INTERRUPT_LINE: u16 = 0x3c;
/// Interrupt pin register (0: the function uses no INTx pin).
pub const PCI_INTERRUPT_PIN: u16 = 0x3d;
const PCI_CACHE_LINE_SIZE: u16 = 0x0c;
const PCI_LATENCY_TIMER: u16 = 0x0d;

/// Command: memory space enable (BARs decode).
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: parity error response.
const COMMAND_PARITY: u16 = 1 << 6;
/// Command: SERR# enable.
const COMMAND_SERR: u16 = 1 << 8;
/// Command: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// The command bits a driver can change (no I/O space: no function here has
/// I/O BARs, so bit 0 is hardwired to 0).
const COMMAND_WRITABLE: u16 =
    COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_PARITY | COMMAND_SERR | COMMAND_INTX_DISABLE;
/// Status: the capabilities pointer is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// Capability ID: vendor-specific.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Capability ID: MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

/// First byte available to capabilities (right after the header).
const CAP_START: usize = 0x40;
/// Number of BAR registers in a type 0 header.
const NUM_BARS: usize = 6;
const BAR_MEM_TYPE_64: u8 = 0b100;
const BAR_MEM_PREFETCHABLE: u8 = 0b1000;

/// What a BAR decodes. Only memory BARs exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// A 32-bit memory BAR (one register).
    Memory32,
    /// A 64-bit memory BAR (this register and the next).
    Memory64,
}

/// A BAR as the device declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBar {
    /// The BAR register index (0-5; for a 64-bit BAR, the lower register).
    pub index: u8,
    /// Size in bytes: a power of two, at least 16.
    pub size: u64,
    /// 32- or 64-bit memory.
    pub kind: BarKind,
    /// Whether the BAR is declared prefetchable.
    pub prefetchable: bool,
}

/// Identification registers of a type 0 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIds {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code: base class, subclass, programming interface (24 bits).
    pub class_code: u32,
    /// Subsystem vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
}

/// The 256-byte configuration space of a conventional type 0 function.
///
/// Offsets 256..4096 (PCI Express extended space) read as zero and ignore
/// writes: the functions here have no PCI Express capability, so Linux never
/// looks there.
#[derive(Clone)]
pub struct PciConfigSpace {
    regs: [u8; PCI_CONFIG_SIZE],
    wmask: [u8; PCI_CONFIG_SIZE],
    bars: [Option<PciBar>; NUM_BARS],
    /// Registers taken by BARs (the upper half of a 64-bit BAR included).
    bar_regs: [bool; NUM_BARS],
    /// Offset of the last capability (to link the next one).
    last_cap: Option<usize>,
    /// First free byte for capabilities.
    next_cap: usize,
}

impl std::fmt::Debug for PciConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfigSpace")
            .field("vendor_id", &format_args!("{:#06x}", self.read_u16(PCI_VENDOR_ID)))
            .field("device_id", &format_args!("{:#06x}", self.read_u16(PCI_DEVICE_ID)))
            .field("command", &format_args!("{:#06x}", self.read_u16(PCI_COMMAND)))
            .field("bars", &self.bars)
            .finish_non_exhaustive()
    }
}

impl PciConfigSpace {
    /// A header with `ids`, no BARs, no capabilities, no interrupt pin.
    pub fn new(ids: PciIds) -> Self {
        let mut s = Self {
            regs: [0; PCI_CONFIG_SIZE],
            wmask: [0; PCI_CONFIG_SIZE],
            bars: [None; NUM_BARS],
            bar_regs: [false; NUM_BARS],
            last_cap: None,
            next_cap: CAP_START,
        };
        s.set_u16(PCI_VENDOR_ID, ids.vendor_id);
        s.set_u16(PCI_DEVICE_ID, ids.device_id);
        s.set_u32(PCI_CLASS_REVISION, (ids.class_code << 8) | u32::from(ids.revision));
        s.set_u16(PCI_SUBSYSTEM_VENDOR_ID, ids.subsystem_vendor_id);
        s.set_u16(PCI_SUBSYSTEM_ID, ids.subsystem_id);
        s.set_wmask(PCI_COMMAND, &COMMAND_WRITABLE.to_le_bytes());
        s.set_wmask(PCI_CACHE_LINE_SIZE, &[0xff]);
        s.set_wmask(PCI_LATENCY_TIMER, &[0xff]);
        s.set_wmask(PCI_INTERRUPT_LINE, &[0xff]);
        s
    }

    /// Declares `bar`; its registers start at zero (unassigned).
    pub fn add_bar(&mut self, bar: PciBar) -> Result<(), PciError> {
        let index = usize::from(bar.index);
        let invalid = PciError::InvalidBar { index: bar.index, size: bar.size };
        let (regs, max_size) = match bar.kind {
            BarKind::Memory32 => (1, 1 << 31),
            BarKind::Memory64 => (2, 1 << 63),
        };
        if index + regs > NUM_BARS || !bar.size.is_power_of_two() || bar.size < 16 || bar.size > max_size {
            return Err(invalid);
        }
        if self.bar_regs[index..index + regs].iter().any(|&used| used) {
            return Err(PciError::BarInUse(bar.index));
        }
        self.bar_regs[index..index + regs].iter_mut().for_each(|used| *used = true);
        self.bars[index] = Some(bar);
        let mask = !(bar.size - 1);
        let mut low_type = 0u8;
        if bar.kind == BarKind::Memory64 {
            low_type |= BAR_MEM_TYPE_64;
        }
        if bar.prefetchable {
            low_type |= BAR_MEM_PREFETCHABLE;
        }
        let reg = Self::bar_reg(bar.index);
        self.set_u32(reg, u32::from(low_type));
        // The four type bits are read-only; so are the address bits below
        // the size.
        self.set_wmask(reg, &((mask as u32) & !0xf).to_le_bytes());
        if bar.kind == BarKind::Memory64 {
            self.set_wmask(reg + 4, &((mask >> 32) as u32).to_le_bytes());
        }
        Ok(())
    }

    /// Appends a capability with ID `id`; `body` is everything after the ID
    /// and next-pointer bytes, `body_wmask` the bits of it the driver may
    /// write (shorter than `body`: the rest is read-only). Returns the
    /// capability's offset.
    pub fn add_capability(&mut self, id: u8, body: &[u8], body_wmask: &[u8]) -> Result<u16, PciError> {
        let len = body.len() + 2;
        let offset = self.next_cap;
        let end = offset.checked_add(len).filter(|&end| end <= PCI_CONFIG_SIZE);
        let (Some(end), Ok(ptr)) = (end, u8::try_from(offset)) else {
            return Err(PciError::NoCapabilitySpace(len));
        };
        self.regs[offset] = id;
        self.regs[offset + 1] = 0;
        self.regs[offset + 2..end].copy_from_slice(body);
        for (m, w) in self.wmask[offset + 2..end].iter_mut().zip(body_wmask) {
            *m = *w;
        }
        match self.last_cap {
            Some(last) => self.regs[last + 1] = ptr,
            None => {
                self.regs[usize::from(PCI_CAPABILITY_LIST)] = ptr;
                let status = self.read_u16(PCI_STATUS) | STATUS_CAP_LIST;
                self.set_u16(PCI_STATUS, status);
            }
        }
        self.last_cap = Some(offset);
        // Capabilities are dword aligned.
        self.next_cap = (end + 3) & !3;
        // `offset` fits in a u8, so in a u16.
        Ok(u16::from(ptr))
    }

    /// The declared BARs, in index order.
    pub fn bars(&self) -> Vec<PciBar> {
        self.bars.iter().flatten().copied().collect()
    }

    /// The address programmed into BAR `index` (whether or not memory
    /// decoding is enabled); `None` if there is no such BAR.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        let bar = self.bars.get(usize::from(index)).copied().flatten()?;
        let reg = Self::bar_reg(index);
        let mut addr = u64::from(self.read_u32(reg) & !0xf);
        if bar.kind == BarKind::Memory64 {
            addr |= u64::from(self.read_u32(reg + 4)) << 32;
        }
        Some(addr)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read_u16(PCI_COMMAND)
    }

    /// A guest read: bytes past the configuration space read as zero.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::from(offset).checked_add(i).and_then(|o| self.regs.get(o)).copied().unwrap_or(0);
        }
    }

    /// A guest write, through the write mask.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = usize::from(offset).checked_add(i).filter(|&o| o < PCI_CONFIG_SIZE) else {
                return;
            };
            self.regs[o] = (self.regs[o] & !self.wmask[o]) | (b & self.wmask[o]);
        }
    }

    /// Reads a little-endian word (zero past the end).
    pub fn read_u16(&self, offset: u16) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// Reads a little-endian dword (zero past the end).
    pub fn read_u32(&self, offset: u16) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Device-side write, ignoring the write mask (bytes past the end are
    /// dropped).
    pub fn set_bytes(&mut self, offset: u16, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            if let Some(r) = usize::from(offset).checked_add(i).and_then(|o| self.regs.get_mut(o)) {
                *r = b;
            }
        }
    }

    /// Device-side write of a little-endian word.
    pub fn set_u16(&mut self, offset: u16, value: u16) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    /// Device-side write of a little-endian dword.
    pub fn set_u32(&mut self, offset: u16, value: u32) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    fn set_wmask(&mut self, offset: u16, mask: &[u8]) {
        for (i, &m) in mask.iter().enumerate() {
            if let Some(w) = usize::from(offset).checked_add(i).and_then(|o| self.wmask.get_mut(o)) {
                *w = m;
            }
        }
    }

    fn bar_reg(index: u8) -> u16 {
        PCI_BAR0 + 4 * u16::from(index)
    }
}

/// Whether `[offset, offset + len)` and `[start, start + size)` overlap.
pub(crate) fn overlaps(offset: u16, len: usize, start: u16, size: usize) -> bool {
    let (offset, start) = (usize::from(offset), usize::from(start));
    offset < start.saturating_add(size) && start < offset.saturating_add(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            revision: 1,
            class_code: 0x010000,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1042,
        }
    }

    #[test]
    fn header_fields_and_read_only_bits() {
        let mut c = PciConfigSpace::new(ids());
        assert_eq!(c.read_u32(0), 0x1042_1af4);
        assert_eq!(c.read_u32(8), 0x0100_0001);
        c.write(0, &[0xff; 4]);
        c.write(8, &[0xff; 4]);
        assert_eq!(c.read_u32(0), 0x1042_1af4);
        assert_eq!(c.read_u32(8), 0x0100_0001);
        c.write(PCI_COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), COMMAND_WRITABLE);
        assert_eq!(c.read_u16(PCI_STATUS) & STATUS_CAP_LIST, 0);
        // Extended space and beyond: zeros, writes dropped.
        let mut b = [0xff; 4];
        c.read(0x100, &mut b);
        assert_eq!(b, [0; 4]);
        c.read(u16::MAX, &mut b);
        assert_eq!(b, [0; 4]);
        c.write(0xfe, &[1, 2, 3, 4]);
        c.write(u16::MAX, &[1, 2, 3, 4]);
        assert_eq!(c.read_u16(0xfe), 0);
    }

    #[test]
    fn bar_sizing() {
        let mut c = PciConfigSpace::new(ids());
        c.add_bar(PciBar { index: 0, size: 0x8000, kind: BarKind::Memory64, prefetchable: false }).unwrap();
        c.add_bar(PciBar { index: 2, size: 0x1000, kind: BarKind::Memory32, prefetchable: true }).unwrap();
        assert!(matches!(
            c.add_bar(PciBar { index: 1, size: 0x1000, kind: BarKind::Memory32, prefetchable: false }),
            Err(PciError::BarInUse(1))
        ));
        for (index, size, kind) in
            [(5, 0x1000, BarKind::Memory64), (3, 0x1800, BarKind::Memory32), (3, 8, BarKind::Memory32)]
        {
            assert!(matches!(
                c.add_bar(PciBar { index, size, kind, prefetchable: false }),
                Err(PciError::InvalidBar { .. })
            ));
        }
        assert_eq!(c.read_u32(0x10), 0x4);
        assert_eq!(c.read_u32(0x18), 0x8);
        // Linux's __pci_read_base: write all-ones, read the mask.
        for reg in [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24] {
            c.write(reg, &[0xff; 4]);
        }
        assert_eq!(c.read_u32(0x10), 0xffff_8004);
        assert_eq!(c.read_u32(0x14), 0xffff_ffff);
        assert_eq!(c.read_u32(0x18), 0xffff_f008);
        assert_eq!(c.read_u32(0x1c), 0);
        assert_eq!(c.read_u32(0x24), 0);
        // Programming an address; low bits below the size are dropped.
        c.write(0x10, &0xc000_1234u32.to_le_bytes());
        c.write(0x14, &0x1u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0x1_c000_0000));
        // Byte-wise programming works the same.
        c.write(0x18, &[0, 0x20]);
        c.write(0x1a, &[0, 0xd0]);
        assert_eq!(c.bar_address(2), Some(0xd000_2000));
        assert_eq!(c.bar_address(1), None);
        assert_eq!(c.bar_address(200), None);
        assert_eq!(c.bars().len(), 2);
    }

    #[test]
    fn capability_chain() {
        let mut c = PciConfigSpace::new(ids());
        let a = c.add_capability(PCI_CAP_ID_VNDR, &[16, 1, 0], &[]).unwrap();
        let b = c.add_capability(PCI_CAP_ID_MSIX, &[0; 10], &[0, 0xc0]).unwrap();
        assert_eq!((a, b), (0x40, 0x48));
        assert_ne!(c.read_u16(PCI_STATUS) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read_u16(PCI_CAPABILITY_LIST), 0x40);
        assert_eq!(c.read_u16(0x40), 0x4809);
        assert_eq!(c.read_u16(0x48), 0x0011);
        c.write(0x48, &[0xff; 4]);
        assert_eq!(c.read_u32(0x48), 0xc000_0011);
        while c.add_capability(PCI_CAP_ID_VNDR, &[0; 30], &[]).is_ok() {}
        assert!(c.next_cap <= PCI_CONFIG_SIZE);
    }
}
