//! Helpers shared by the unit tests.

use crate::description::{IoApic, PciRoot, Platform, ResetRegister, SerialPort, SleepRegisters};

/// Sum of all bytes mod 256; 0 for a table with a correct checksum.
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))
}

pub(crate) fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Two CPUs, the I/O APIC at its usual place, the power registers at 0x600 (control), 0x601
/// (status), 0x602 (reset, value 1), S5 = 5, COM1; no virtio-mmio devices, no PCI, no IOMMU.
pub(crate) fn sample_platform() -> Platform {
    Platform {
        cpus: vec![0, 1],
        ioapic: IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
        isa_overrides: vec![],
        sleep: SleepRegisters { control_port: 0x600, status_port: 0x601, s5_slp_typ: 5 },
        reset: ResetRegister { port: 0x602, value: 1 },
        serial_ports: vec![SerialPort { io_base: 0x3f8, irq: 4, uid: 1 }],
        virtio_mmio: Vec::new(),
        pci_roots: Vec::new(),
        viot: None,
    }
}

/// Segment 0, buses 0-0xff, ECAM at 0xb000_0000, 32-bit window 0xc000_0000 + 512 MiB, 64-bit
/// window of 64 GiB at 1 TiB, coherent.
pub(crate) fn sample_pci_root() -> PciRoot {
    PciRoot {
        segment: 0,
        bus_start: 0,
        bus_end: 0xff,
        ecam_base: 0xb000_0000,
        mem32: (0xc000_0000, 0x2000_0000),
        mem64: (0x100_0000_0000, 0x10_0000_0000),
        coherent: true,
    }
}
