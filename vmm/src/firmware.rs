//! What stands in for firmware: the ACPI description of the machine, from
//! the same constants the device models use, and a 16-byte stub at the
//! real-mode reset vector, both in the BIOS area of guest memory.
//!
//! The stub exists because of how Linux reboots a hardware-reduced ACPI
//! machine: `reboot_init()` picks EFI reboot whenever the FADT is
//! hardware-reduced (`efi_reboot_required()`), so without EFI the kernel
//! falls through to `machine_real_restart(MRR_BIOS)` and jumps to
//! F000:FFF0 in real mode, never trying the FADT reset register (measured:
//! the guest wrote the CMOS shutdown byte, then hung in zeroed memory).
//! The stub does what a BIOS would: it resets the machine, through the same
//! reset register the FADT declares.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use dmavm_acpi::{AcpiTables, IoApic, Platform, ResetRegister, SerialPort, SleepRegisters};
use dmavm_devices::legacy::power::{
    POWER_PORT_BASE, RESET_OFFSET, RESET_VALUE, S5_SLP_TYP, SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET,
};
use dmavm_devices::legacy::{COM1_ADDR, COM1_IRQ};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{ACPI_END, ACPI_START, IOAPIC_ADDR, RESET_VECTOR};
use crate::machine::Machine;

/// Real-mode code at the reset vector: `mov al, RESET_VALUE; mov dx,
/// RESET_PORT; out dx, al; hlt; jmp $-1`.
fn reset_stub() -> Result<Vec<u8>> {
    let [lo, hi] = u16::try_from(POWER_PORT_BASE + RESET_OFFSET)?.to_le_bytes();
    Ok(vec![0xb0, RESET_VALUE, 0xba, lo, hi, 0xee, 0xf4, 0xeb, 0xfd])
}

/// The platform dmavm declares for `cpus` vCPUs (APIC ID = vCPU index) and
/// the devices of `machine`.
pub fn platform(cpus: u32, memory: u64, machine: &Machine) -> Result<Platform> {
    let cpus = (0..cpus).map(u8::try_from).collect::<Result<Vec<u8>, _>>().context("APIC IDs are 8-bit")?;
    let port = |offset: u64| u16::try_from(POWER_PORT_BASE + offset).map_err(|_| anyhow!("power port"));
    Ok(Platform {
        cpus,
        ioapic: IoApic { id: 0, address: IOAPIC_ADDR as u32, gsi_base: 0 },
        // Every ISA IRQ reaches the IOAPIC pin of the same number; without
        // a PIT there is no IRQ 0 to redirect to pin 2.
        isa_overrides: Vec::new(),
        sleep: SleepRegisters {
            control_port: port(SLEEP_CONTROL_OFFSET)?,
            status_port: port(SLEEP_STATUS_OFFSET)?,
            s5_slp_typ: S5_SLP_TYP,
        },
        reset: ResetRegister { port: port(RESET_OFFSET)?, value: RESET_VALUE },
        serial_ports: vec![SerialPort { io_base: COM1_ADDR as u16, irq: COM1_IRQ as u8, uid: 0 }],
        virtio_mmio: machine.acpi_virtio_mmio(),
        pci_roots: machine.acpi_pci_roots(memory)?,
        viot: machine.acpi_viot(),
    })
}

/// The tables of `platform`, placed in the BIOS area as the guest gets
/// them (`describe` shows and dumps exactly these).
pub fn tables(platform: &Platform) -> Result<AcpiTables> {
    dmavm_acpi::build(platform, ACPI_START..ACPI_END).context("building the ACPI tables")
}

/// Builds the tables for `cpus` vCPUs and writes them into `mem`; returns
/// them (the RSDP address goes to the kernel).
pub fn install(mem: &GuestMemoryMmap, cpus: u32, memory: u64, machine: &Machine) -> Result<AcpiTables> {
    let tables = tables(&platform(cpus, memory, machine)?)?;
    for blob in &tables.blobs {
        mem.write_slice(&blob.bytes, GuestAddress(blob.addr)).context("writing the ACPI tables")?;
    }
    mem.write_slice(&reset_stub()?, GuestAddress(RESET_VECTOR)).context("writing the reset stub")?;
    Ok(tables)
}

/// Writes each table as `dir/<SIG>.dat` (the names `iasl -d` expects).
pub fn dump(tables: &AcpiTables, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tables.dump_to_dir(dir).with_context(|| format!("cannot dump the ACPI tables into {}", dir.display()))?;
    Ok(())
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
