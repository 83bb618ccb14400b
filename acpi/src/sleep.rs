//! The power-off and reset contract between these tables and the VMM's devices.
//!
//! The FADT declares a HW-reduced machine, so the guest has no PM1 control block: it powers off
//! and reboots only through the registers described by [`crate::SleepRegisters`] and
//! [`crate::ResetRegister`]. The device models behind those I/O ports must behave as follows.
//!
//! # Power-off (S5) — ACPI 6.5 sections 4.8.3.7 and 7.4.2
//!
//! To enter S5, Linux (ACPICA `acpi_hw_extended_sleep()`, used whenever the FADT has
//! HW_REDUCED_ACPI) evaluates `\_S5_`, takes the first package element as SLP_TYP, then:
//!
//! 1. writes [`SLEEP_STATUS_WAK_STS`] (0x80) to SLEEP_STATUS_REG (one byte; clears WAK_STS,
//!    write-1-to-clear),
//! 2. writes `((SLP_TYP << 2) & 0x1c) | 0x20` — i.e. [`sleep_control_value`] — to
//!    SLEEP_CONTROL_REG as one byte (SLP_TYP in bits 2-4, SLP_EN in bit 5),
//! 3. then polls SLEEP_STATUS_REG until WAK_STS (bit 7) reads as 1.
//!
//! So the sleep control device must power the VM off when it sees a byte write with SLP_EN set
//! and SLP_TYP equal to the S5 value of the description (reserved bits 0-1 and 6-7 are written as
//! 0 and should be ignored). Other SLP_TYP values must not power off (this machine only declares
//! S5). The sleep status device must accept byte writes (ignoring them is fine) and return a byte
//! on reads; it never needs to set WAK_STS because the VM is gone before the guest polls again.
//! Linux only installs its ACPI power-off handler when `\_S5_` exists *and* both registers are
//! non-zero in the FADT, so both ports are required.
//!
//! # Reset — ACPI 6.5 section 4.8.3.6
//!
//! The FADT sets RESET_REG_SUP with an 8-bit system I/O RESET_REG at bit offset 0 (Linux's
//! `acpi_reboot()` ignores any other shape). To reboot, Linux writes RESET_VALUE to that port as
//! one byte; the reset device must reset (or, for this VMM, end) the VM on exactly that write.
//! If that write has no effect Linux falls back to the keyboard controller and a triple fault.

/// SLP_EN, bit 5 of SLEEP_CONTROL_REG (ACPI 6.5 section 4.8.3.7): writing it triggers the transition.
pub const SLEEP_CONTROL_SLP_EN: u8 = 1 << 5;
/// Position of SLP_TYP (bits 2-4) in SLEEP_CONTROL_REG (ACPI 6.5 section 4.8.3.7).
pub const SLEEP_CONTROL_SLP_TYP_SHIFT: u32 = 2;
/// Mask of SLP_TYP (bits 2-4) in SLEEP_CONTROL_REG (ACPI 6.5 section 4.8.3.7).
pub const SLEEP_CONTROL_SLP_TYP_MASK: u8 = 0b111 << SLEEP_CONTROL_SLP_TYP_SHIFT;
/// WAK_STS, bit 7 of SLEEP_STATUS_REG (ACPI 6.5 section 4.8.3.7), write 1 to clear.
pub const SLEEP_STATUS_WAK_STS: u8 = 1 << 7;
/// Largest SLP_TYP value: the field is 3 bits wide.
pub const SLP_TYP_MAX: u8 = 7;

/// The byte the guest writes to SLEEP_CONTROL_REG to enter the sleep state whose `\_Sx_` package
/// gives `slp_typ` (bits above the 3-bit field are dropped, as the guest does).
pub const fn sleep_control_value(slp_typ: u8) -> u8 {
    ((slp_typ << SLEEP_CONTROL_SLP_TYP_SHIFT) & SLEEP_CONTROL_SLP_TYP_MASK) | SLEEP_CONTROL_SLP_EN
}

/// The SLP_TYP a SLEEP_CONTROL_REG write requests, or `None` if SLP_EN is clear (the write does
/// not start a transition).
pub const fn requested_slp_typ(control: u8) -> Option<u8> {
    if control & SLEEP_CONTROL_SLP_EN == 0 {
        None
    } else {
        Some((control & SLEEP_CONTROL_SLP_TYP_MASK) >> SLEEP_CONTROL_SLP_TYP_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_power_off_write_for_slp_typ_5() {
        // (5 << 2) | 0x20 = 0x14 | 0x20
        assert_eq!(sleep_control_value(5), 0x34);
        assert_eq!(sleep_control_value(0), 0x20);
        assert_eq!(sleep_control_value(7), 0x3c);
    }

    #[test]
    fn decoding_control_writes() {
        assert_eq!(requested_slp_typ(0x34), Some(5));
        assert_eq!(requested_slp_typ(0x14), None, "SLP_EN clear");
        assert_eq!(requested_slp_typ(0xf4), Some(5), "reserved bits ignored");
        for typ in 0..=SLP_TYP_MAX {
            assert_eq!(requested_slp_typ(sleep_control_value(typ)), Some(typ));
        }
    }
}
