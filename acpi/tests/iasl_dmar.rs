//! The DMAR, checked by ACPICA's `iasl`: it must disassemble without any warning or error,
//! recompile to the same bytes, and say what we meant (units, flags, scopes and their paths).
//! A missing `iasl` fails the test: it must not pass without having checked.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use dmavm_acpi::{
    build, Dmar, DmarScope, DmarUnit, IoApic, PciRoot, Platform, ResetRegister, SleepRegisters,
};

fn root(segment: u16, ecam_base: u64) -> PciRoot {
    PciRoot {
        segment,
        bus_start: 0,
        bus_end: if segment == 0 { 0xff } else { 0 },
        ecam_base,
        mem32: (0xc000_0000 + u32::from(segment) * 0x100_0000, 0x100_0000),
        mem64: (0, 0),
        coherent: true,
    }
}

/// Two segments: segment 0 with a unit for 00:01.0 and 00:02.0 (00:03.0 bypasses), segment 1
/// whole (a hot-pluggable bridge), segment 2 with a unit for 0002:00:05.0.
fn platform() -> Platform {
    Platform {
        cpus: vec![0],
        ioapic: IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
        isa_overrides: vec![],
        sleep: SleepRegisters { control_port: 0x600, status_port: 0x601, s5_slp_typ: 5 },
        reset: ResetRegister { port: 0x602, value: 1 },
        serial_ports: vec![],
        virtio_mmio: vec![],
        pci_roots: vec![root(0, 0xe000_0000), root(1, 0xf000_0000), root(2, 0xf010_0000)],
        viot: None,
        dmar: Some(Dmar {
            host_address_width: 48,
            units: vec![
                DmarUnit {
                    segment: 0,
                    register_base: 0xfed9_0000,
                    scope: DmarScope::Endpoints(vec![0x08, 0x10]),
                },
                DmarUnit { segment: 1, register_base: 0xfed9_1000, scope: DmarScope::IncludePciAll },
                DmarUnit { segment: 2, register_base: 0xfed9_2000, scope: DmarScope::Endpoints(vec![0x28]) },
            ],
        }),
        hotplug: None,
    }
}

#[test]
fn iasl_decodes_the_dmar() {
    let dir = work_dir("dmar");
    let tables = build(&platform(), 0xe_0000..0x10_0000).expect("build tables");
    tables.dump_to_dir(&dir).expect("dump tables");
    let dmar = round_trip(&dir, blob(&tables, b"DMAR"));
    let xsdt = disassemble(&dir, blob(&tables, b"XSDT"));

    // Listed in the XSDT, after the MADT and MCFG.
    assert_has(&xsdt, "XSDT", &format!("ACPI Table Address 3 : {:016X}", blob(&tables, b"DMAR").addr));
    assert!(!xsdt.contains("ACPI Table Address 4"), "{xsdt}");

    assert_has(&dmar, "DMAR", "Revision : 01");
    assert_eq!(field_values(&dmar, "Host Address Width"), ["2F"], "{dmar}");
    // The table's flags (no INTR_REMAP, no X2APIC_OPT_OUT), then each DRHD's followed by its
    // scopes': only segment 1's unit is INCLUDE_PCI_ALL.
    assert_eq!(field_values(&dmar, "Flags"), ["00", "00", "00", "00", "01", "00", "00"], "{dmar}");
    assert_eq!(field_values(&dmar, "Size (decoded below)"), ["00"; 3], "one page of registers: {dmar}");
    assert_eq!(
        field_values(&dmar, "Subtable Type"),
        ["0000 [Hardware Unit Definition]"; 3],
        "three DRHDs and nothing else (no RMRR): {dmar}"
    );
    assert_eq!(field_values(&dmar, "PCI Segment Number"), ["0000", "0001", "0002"], "{dmar}");
    assert_eq!(
        field_values(&dmar, "Register Base Address"),
        ["00000000FED90000", "00000000FED91000", "00000000FED92000"],
        "{dmar}"
    );
    assert_eq!(field_values(&dmar, "Device Scope Type"), ["01 [PCI Endpoint Device]"; 3], "{dmar}");
    assert_eq!(field_values(&dmar, "PCI Bus Number"), ["00", "00", "00"], "{dmar}");
    assert_eq!(field_values(&dmar, "PCI Path"), ["01,00", "02,00", "05,00"], "{dmar}");
    assert_eq!(field_values(&dmar, "Entry Length"), ["08", "08", "08"], "{dmar}");
}
