//! Fixed ACPI Description Table, revision 6.5 (ACPI 6.5 section 5.2.9).
//!
//! The machine is HW-reduced (section 4.1): every fixed-hardware field (PM1/PM2/PM timer/GPE
//! blocks, SCI, SMI command, FACS) stays 0 and only the fields a HW-reduced OSPM reads are set:
//! X_DSDT, the flags, IAPC_BOOT_ARCH, RESET_REG/RESET_VALUE, the sleep registers and the
//! hypervisor vendor identity.
//!
//! Linux consequences: with HW_REDUCED_ACPI, `acpi_generic_reduced_hw_init()` skips the PIT/PIC
//! timer set-up and installs the null legacy PIC (this VMM has neither), and no FACS is looked
//! for. IAPC_BOOT_ARCH without the 8042 bit and with "CMOS RTC not present" makes it skip the
//! i8042 probe and the RTC platform device.

use acpi_tables::fadt::{FADTBuilder, Flags, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;

use crate::description::Platform;
use crate::identity::{HYPERVISOR_VENDOR_ID, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// IAPC_BOOT_ARCH bit 2, "VGA Not Present" (ACPI 6.5 section 5.2.9.3).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IAPC_BOOT_ARCH bit 5, "CMOS RTC Not Present" (ACPI 6.5 section 5.2.9.3).
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// IA-PC boot architecture flags: bit 0 (LEGACY_DEVICES, i.e. ISA devices not described in
/// ACPI) and bit 1 (8042 present) stay clear so the OS probes neither; no VGA; no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT;

/// Length of a revision 6 FADT (276 bytes).
pub(crate) fn len() -> usize {
    FADT::len()
}

/// A one-byte register in system I/O space, as FADT register GASes are (ACPI 6.5 section
/// 5.2.3.2): width 8 bits, offset 0, byte access. Linux's reboot path insists on width 8 and
/// offset 0 for RESET_REG.
fn io_byte_register(port: u16) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, u64::from(port))
}

/// The FADT of `platform`, pointing at the DSDT at `dsdt_addr`.
pub(crate) fn encode(platform: &Platform, dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        // 64-bit X_DSDT only; the 32-bit DSDT field stays 0 (section 5.2.9: X_DSDT wins).
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // PWR_BUTTON/SLP_BUTTON set mean "no fixed-feature button" (section 5.2.9, fixed feature flags): there is no
        // PM1 block to hold one.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_byte_register(platform.reset.port);
    fadt.reset_value = platform.reset.value;
    fadt.sleep_control_reg = io_byte_register(platform.sleep.control_port);
    fadt.sleep_status_reg = io_byte_register(platform.sleep.status_port);
    // An 8-byte field, stored as the bytes of the string (section 5.2.9, offset 268).
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR_ID).into();

    let mut bytes = Vec::with_capacity(len());
    fadt.finalize().to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{byte_sum, le_u16, le_u32, le_u64, sample_platform};

    // Offsets from the FADT format of ACPI 6.5 section 5.2.9.
    const FIRMWARE_CTRL: usize = 36;
    const DSDT: usize = 40;
    const SCI_INT: usize = 46;
    const PM1A_CNT_BLK: usize = 64;
    const IAPC_BOOT_ARCH_OFF: usize = 109;
    const FLAGS: usize = 112;
    const RESET_REG: usize = 116;
    const RESET_VALUE: usize = 128;
    const MINOR_VERSION: usize = 131;
    const X_FIRMWARE_CTRL: usize = 132;
    const X_DSDT: usize = 140;
    const X_PM1A_EVT_BLK: usize = 148;
    const SLEEP_CONTROL_REG: usize = 244;
    const SLEEP_STATUS_REG: usize = 256;
    const HYPERVISOR_VENDOR: usize = 268;

    fn sample() -> Vec<u8> {
        encode(&sample_platform(), 0x000e_1234)
    }

    #[test]
    fn header_length_revision_checksum() {
        let b = sample();
        assert_eq!(b.len(), 276);
        assert_eq!(&b[0..4], b"FACP");
        assert_eq!(le_u32(&b, 4), 276);
        assert_eq!(b[8], 6, "major revision");
        assert_eq!(b[MINOR_VERSION], 5, "minor revision");
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(&b[10..16], b"DMAVM ");
    }

    #[test]
    fn dsdt_only_through_x_dsdt_and_no_facs() {
        let b = sample();
        assert_eq!(le_u64(&b, X_DSDT), 0x000e_1234);
        assert_eq!(le_u32(&b, DSDT), 0);
        assert_eq!(le_u32(&b, FIRMWARE_CTRL), 0);
        assert_eq!(le_u64(&b, X_FIRMWARE_CTRL), 0);
    }

    #[test]
    fn flags_word() {
        // PWR_BUTTON (bit 4) 0x10 + SLP_BUTTON (bit 5) 0x20 + RESET_REG_SUP (bit 10) 0x400 +
        // HW_REDUCED_ACPI (bit 20) 0x10_0000.
        assert_eq!(le_u32(&sample(), FLAGS), 0x0010_0430);
    }

    #[test]
    fn iapc_boot_arch_no_8042_no_vga_no_rtc() {
        // VGA Not Present (bit 2) 0x04 + CMOS RTC Not Present (bit 5) 0x20.
        assert_eq!(le_u16(&sample(), IAPC_BOOT_ARCH_OFF), 0x0024);
    }

    #[test]
    fn register_gases_are_byte_wide_system_io() {
        let b = sample();
        // space 1 (System I/O), width 8, offset 0, access size 1 (byte), 64-bit address.
        assert_eq!(&b[RESET_REG..RESET_REG + 12], &[1, 8, 0, 1, 0x02, 0x06, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[RESET_VALUE], 0x01);
        assert_eq!(
            &b[SLEEP_CONTROL_REG..SLEEP_CONTROL_REG + 12],
            &[1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&b[SLEEP_STATUS_REG..SLEEP_STATUS_REG + 12], &[1, 8, 0, 1, 0x01, 0x06, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn hypervisor_vendor_identity() {
        let b = sample();
        assert_eq!(&b[HYPERVISOR_VENDOR..HYPERVISOR_VENDOR + 8], b"DMAVM\0\0\0");
    }

    #[test]
    fn fixed_hardware_left_empty() {
        let b = sample();
        assert_eq!(le_u16(&b, SCI_INT), 0);
        assert_eq!(le_u32(&b, PM1A_CNT_BLK), 0);
        // All X_ fixed-hardware GASes, X_PM1a_EVT_BLK .. X_GPE1_BLK.
        assert!(b[X_PM1A_EVT_BLK..SLEEP_CONTROL_REG].iter().all(|&x| x == 0));
    }
}
