//! What stands in for firmware: the machine model's ACPI tables and a
//! 16-byte stub at the real-mode reset vector, both in the BIOS area of
//! guest memory.
//!
//! The stub exists because of how Linux reboots a hardware-reduced ACPI
//! machine: `reboot_init()` picks EFI reboot whenever the FADT is
//! hardware-reduced (`efi_reboot_required()`), so without EFI the kernel
//! falls through to `machine_real_restart(MRR_BIOS)` and jumps to
//! F000:FFF0 in real mode, never trying the FADT reset register (measured:
//! the guest wrote the CMOS shutdown byte, then hung in zeroed memory).
//! The stub does what a BIOS would: it resets the machine, through the same
//! reset register the FADT declares.

use anyhow::{Context, Result};
use dmavm_acpi::AcpiTables;
use dmavm_devices::legacy::power::{POWER_PORT_BASE, RESET_OFFSET, RESET_VALUE};
use dmavm_machine::Machine;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::RESET_VECTOR;

/// Real-mode code at the reset vector: `mov al, RESET_VALUE; mov dx,
/// RESET_PORT; out dx, al; hlt; jmp $-1`.
fn reset_stub() -> Result<Vec<u8>> {
    let [lo, hi] = u16::try_from(POWER_PORT_BASE + RESET_OFFSET)?.to_le_bytes();
    Ok(vec![0xb0, RESET_VALUE, 0xba, lo, hi, 0xee, 0xf4, 0xeb, 0xfd])
}

/// Builds the machine's tables and writes them into `mem`; returns them
/// (the RSDP address goes to the kernel).
pub fn install(mem: &GuestMemoryMmap, machine: &Machine) -> Result<AcpiTables> {
    let tables = machine.acpi_tables()?;
    for blob in &tables.blobs {
        mem.write_slice(&blob.bytes, GuestAddress(blob.addr)).context("writing the ACPI tables")?;
    }
    mem.write_slice(&reset_stub()?, GuestAddress(RESET_VECTOR)).context("writing the reset stub")?;
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_stub_writes_the_reset_register() {
        // mov al, 1 ; mov dx, 0x602 ; out dx, al ; hlt ; jmp back to hlt
        assert_eq!(reset_stub().unwrap(), [0xb0, 0x01, 0xba, 0x02, 0x06, 0xee, 0xf4, 0xeb, 0xfd]);
    }
}
