//! The hardware-reduced ACPI power registers: sleep control, sleep status and
//! reset, in a small I/O port block.
//!
//! A hardware-reduced platform (ACPI 6.5, 4.1) has no PM1 blocks; the FADT
//! points `SLEEP_CONTROL_REG`, `SLEEP_STATUS_REG` and `RESET_REG` at these
//! ports instead (ACPI 6.5, 4.8.3.7 and 4.8.3.6). To enter S5, Linux writes
//! `(SLP_TYP << 2) | SLP_EN` to the sleep control register
//! (`acpi_hw_extended_sleep`), with `SLP_TYP` taken from the DSDT's `\_S5_`
//! package; to reset, it writes `RESET_VALUE` to the reset register. The
//! firmware builder must describe exactly the constants below.

use crate::bus::BusDevice;

/// First port of the block.
pub const POWER_PORT_BASE: u64 = 0x600;
/// Ports in the block.
pub const POWER_PORT_LEN: u64 = 3;
/// Offset of the sleep control register.
pub const SLEEP_CONTROL_OFFSET: u64 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS_OFFSET: u64 = 1;
/// Offset of the reset register.
pub const RESET_OFFSET: u64 = 2;
/// The `SLP_TYP` value the DSDT's `\_S5_` object gives for soft-off.
pub const S5_SLP_TYP: u8 = 5;
/// The value that resets the machine when written to the reset register.
pub const RESET_VALUE: u8 = 1;

/// `SLP_EN`, bit 5 of the sleep control register (ACPI 6.5, table 4.19).
const SLP_EN: u8 = 1 << 5;

/// What the guest asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// Enter S5 (soft-off).
    PowerOff,
    /// Reset the machine.
    Reset,
}

/// The register block; requests go to a callback.
pub struct PowerRegisters {
    on_request: Box<dyn Fn(PowerRequest) + Send>,
}

impl std::fmt::Debug for PowerRegisters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerRegisters").finish_non_exhaustive()
    }
}

impl PowerRegisters {
    /// `on_request` is called for every power-off or reset the guest asks for.
    pub fn new(on_request: impl Fn(PowerRequest) + Send + 'static) -> Self {
        Self { on_request: Box::new(on_request) }
    }
}

impl BusDevice for PowerRegisters {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Sleep status: WAK_STS (bit 7) never set, as nothing here sleeps
        // and wakes; the other registers read as zero too.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [value] = data else { return };
        match offset {
            SLEEP_CONTROL_OFFSET if value & SLP_EN != 0 => {
                let slp_typ = (value >> 2) & 0x7;
                if slp_typ == S5_SLP_TYP {
                    (self.on_request)(PowerRequest::PowerOff);
                } else {
                    crate::guest_log!(static log::Level::Warn, "guest asked for sleep type {slp_typ}, which dmavm does not offer; ignored");
                }
            }
            RESET_OFFSET if *value == RESET_VALUE => (self.on_request)(PowerRequest::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn device() -> (PowerRegisters, Arc<Mutex<Vec<PowerRequest>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (PowerRegisters::new(move |r| s.lock().unwrap().push(r)), seen)
    }

    #[test]
    fn linux_s5_write_powers_off() {
        let (mut d, seen) = device();
        // (5 << 2) | 0x20, what acpi_hw_extended_sleep writes for S5.
        d.write(SLEEP_CONTROL_OFFSET, &[0x34]);
        assert_eq!(*seen.lock().unwrap(), vec![PowerRequest::PowerOff]);
    }

    #[test]
    fn reset_value_resets() {
        let (mut d, seen) = device();
        d.write(RESET_OFFSET, &[RESET_VALUE]);
        assert_eq!(*seen.lock().unwrap(), vec![PowerRequest::Reset]);
    }

    #[test]
    fn other_writes_do_nothing() {
        let (mut d, seen) = device();
        d.write(SLEEP_CONTROL_OFFSET, &[5 << 2]); // no SLP_EN
        d.write(SLEEP_CONTROL_OFFSET, &[(3 << 2) | 0x20]); // S3
        d.write(RESET_OFFSET, &[2]);
        d.write(RESET_OFFSET, &[1, 0]); // wide access
        d.write(SLEEP_STATUS_OFFSET, &[0xff]);
        d.write(u64::MAX, &[0x34]);
        let mut b = [0xaau8; 2];
        d.read(SLEEP_STATUS_OFFSET, &mut b);
        assert_eq!(b, [0, 0]);
        assert!(seen.lock().unwrap().is_empty());
    }
}
