//! The two ways the guest reaches configuration space: ECAM (an MMIO
//! window, 1 MiB per bus, 4 KiB per function; PCIe 6.0, 7.2.2) and the
//! legacy port-I/O mechanism #1 (CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at
//! 0xCFC-0xCFF; PCI Local Bus 3.0, 3.2.2.3.2). Both forward to the same
//! [`PciRoot`].

use std::sync::{Arc, Mutex};

use super::root::PciRoot;
use crate::bus::BusDevice;

/// ECAM space per bus.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;
/// Where the port-I/O mechanism lives.
pub const PCI_CONFIG_IO_PORT: u64 = 0xcf8;
/// Its length: CONFIG_ADDRESS and CONFIG_DATA.
pub const PCI_CONFIG_IO_LEN: u64 = 8;

/// CONFIG_ADDRESS: the enable bit.
const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// CONFIG_ADDRESS: the bits that hold something (enable, bus, device,
/// function, dword register); bits 30:24 are reserved and bits 1:0 are
/// always zero.
const CONFIG_ADDRESS_MASK: u32 = CONFIG_ADDRESS_ENABLE | 0x00ff_fffc;

/// The ECAM window of a segment whose buses start at 0.
#[derive(Debug)]
pub struct PciEcam {
    root: Arc<Mutex<PciRoot>>,
    buses: u16,
}

impl PciEcam {
    /// An ECAM window for buses `0..buses` (1 to 256; clamped).
    pub fn new(root: Arc<Mutex<PciRoot>>, buses: u16) -> Self {
        Self { root, buses: buses.clamp(1, 256) }
    }

    /// Size of the window: what the VMM registers on the MMIO bus (and
    /// describes in MCFG).
    pub fn window_size(&self) -> u64 {
        u64::from(self.buses) * ECAM_BUS_SIZE
    }

    /// Splits an offset into (bus, device, function, register), if it lies
    /// inside the window.
    fn decode(&self, offset: u64) -> Option<(u8, u8, u8, u16)> {
        if offset >= self.window_size() {
            return None;
        }
        // All fields are masked to their width; bus < 256 by the check.
        Some((
            (offset >> 20) as u8,
            ((offset >> 15) & 0x1f) as u8,
            ((offset >> 12) & 7) as u8,
            (offset & 0xfff) as u16,
        ))
    }
}

impl BusDevice for PciEcam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some((bus, dev, func, reg)) = self.decode(offset) else { return };
        if let Ok(root) = self.root.lock() {
            root.config_read(bus, dev, func, reg, data);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some((bus, dev, func, reg)) = self.decode(offset) else { return };
        if let Ok(mut root) = self.root.lock() {
            root.config_write(bus, dev, func, reg, data);
        }
    }
}

/// CONFIG_ADDRESS / CONFIG_DATA, registered at [`PCI_CONFIG_IO_PORT`] for
/// [`PCI_CONFIG_IO_LEN`] ports.
///
/// CONFIG_ADDRESS only answers dword accesses (a narrower access to 0xCF8-
/// 0xCFB reads all-ones and is ignored, as on chipsets where it would go to
/// another device). CONFIG_DATA takes byte, word and dword accesses at any
/// port offset that keeps them inside 0xCFC-0xCFF; with the enable bit clear
/// it reads all-ones and ignores writes.
#[derive(Debug)]
pub struct PciConfigIo {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
}

impl PciConfigIo {
    /// The mechanism in front of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        Self { root, address: 0 }
    }

    /// The target of a CONFIG_DATA access at port offset `port` (0-3) of
    /// `len` bytes, if the address register is enabled and the access stays
    /// inside CONFIG_DATA.
    fn target(&self, port: u64, len: usize) -> Option<(u8, u8, u8, u16)> {
        if self.address & CONFIG_ADDRESS_ENABLE == 0 || port.checked_add(len as u64).is_none_or(|e| e > 4) {
            return None;
        }
        let a = self.address;
        // `port` < 4 here; every field is masked to its width.
        let register = (a & 0xfc) as u16 + port as u16;
        Some(((a >> 16) as u8, ((a >> 11) & 0x1f) as u8, ((a >> 8) & 7) as u8, register))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match offset {
            0 => {
                if let Ok(bytes) = <&mut [u8; 4]>::try_from(data) {
                    *bytes = self.address.to_le_bytes();
                }
            }
            4..=7 => {
                let Some((bus, dev, func, reg)) = self.target(offset - 4, data.len()) else { return };
                if let Ok(root) = self.root.lock() {
                    root.config_read(bus, dev, func, reg, data);
                }
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 => {
                if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                    self.address = u32::from_le_bytes(bytes) & CONFIG_ADDRESS_MASK;
                }
            }
            4..=7 => {
                let Some((bus, dev, func, reg)) = self.target(offset - 4, data.len()) else { return };
                if let Ok(mut root) = self.root.lock() {
                    root.config_write(bus, dev, func, reg, data);
                }
            }
            _ => {}
        }
    }
}
