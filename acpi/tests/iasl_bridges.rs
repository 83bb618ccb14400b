//! Several PCI host bridges laid out as dmavm lays them out (every segment with bus 0 only, each
//! with its own ECAM and windows, coherency differing per root), and a virtio-iommu whose scope
//! spans segments; checked by iasl for 1, 2 and 4 bridges: the MCFG,
//! DSDT and VIOT disassemble without any warning or error, the MCFG and VIOT recompile to the same
//! bytes and the DSDT cleanly, and they say one MCFG allocation per segment with its bus range,
//! one `PNP0A08` root per segment with its `_SEG`, `_BBN`, `_CCA` and `_CRS`, every ECAM region
//! reserved by the motherboard resource device, and VIOT PCI ranges that carry their segment and
//! start at endpoint `segment << 16 | BDF`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use dmavm_acpi::{
    build, HotplugController, IoApic, PciRoot, Platform, ResetRegister, SerialPort, SleepRegisters, Viot,
    ViotIommu, ViotMmioEndpoint, ViotPciRange, VirtioMmioDevice,
};

/// Segment 0: ECAM 0xe0000000 (buses 0-0xff), 256 MiB at 0xc0000000, 32 GiB at 4 GiB, coherent.
/// Segment s > 0: ECAM 0xf0000000 + (s - 1) MiB (bus 0), 16 MiB at 0xd1000000 + (s - 1) * 16 MiB,
/// 4 GiB at 36 GiB + (s - 1) * 4 GiB; the odd ones non-coherent.
fn root(segment: u16) -> PciRoot {
    if segment == 0 {
        return PciRoot {
            segment,
            bus_start: 0,
            bus_end: 0,
            ecam_base: 0xe000_0000,
            mem32: (0xc000_0000, 0x1000_0000),
            mem64: (4 << 30, 32 << 30),
            coherent: true,
        };
    }
    let n = u32::from(segment - 1);
    PciRoot {
        segment,
        bus_start: 0,
        bus_end: 0,
        ecam_base: 0xf000_0000 + u64::from(n) * 0x10_0000,
        mem32: (0xd100_0000 + n * 0x100_0000, 0x100_0000),
        mem64: ((36 << 30) + u64::from(n) * (4 << 30), 4 << 30),
        coherent: segment % 2 == 0,
    }
}

/// `bridges` roots; a virtio-iommu at 0000:00:01.0 translating 0000:00:02.0, function 01.0 of
/// every segment from 2 on (segment 1 bypasses it) and the virtio-mmio device, whose endpoint ID
/// comes above every segment's.
fn platform(bridges: u16) -> Platform {
    let mut pci_ranges =
        vec![ViotPciRange { segment: 0, bdf_start: 0x10, bdf_end: 0x17, endpoint_start: 0x10 }];
    pci_ranges.extend((2..bridges).map(|segment| ViotPciRange {
        segment,
        bdf_start: 0x08,
        bdf_end: 0x0f,
        endpoint_start: u32::from(segment) << 16 | 0x08,
    }));
    Platform {
        cpus: vec![0, 1],
        ioapic: IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
        isa_overrides: vec![],
        sleep: SleepRegisters { control_port: 0x600, status_port: 0x601, s5_slp_typ: 5 },
        reset: ResetRegister { port: 0x602, value: 1 },
        serial_ports: vec![SerialPort { io_base: 0x3f8, irq: 4, uid: 0 }],
        virtio_mmio: vec![VirtioMmioDevice { base: 0xd000_0000, size: 0x200, gsi: 5, coherent: true }],
        pci_roots: (0..bridges).map(root).collect(),
        viot: Some(Viot {
            iommu: ViotIommu::Pci { segment: 0, bdf: 0x08 },
            pci_ranges,
            mmio_endpoints: vec![ViotMmioEndpoint { base: 0xd000_0000, endpoint: u32::from(bridges) << 16 }],
        }),
        dmar: None,
        hotplug: None,
    }
}

/// How iasl writes a small integer in ASL.
fn aml_int(v: u64) -> String {
    match v {
        0 => "Zero".into(),
        1 => "One".into(),
        _ => format!("0x{v:02X}"),
    }
}

fn check_bridges(bridges: u16) {
    let dir = work_dir(&format!("bridges-{bridges}"));
    require_viot_support(&dir);
    let platform = platform(bridges);
    let tables = build(&platform, 0xe_0000..0x10_0000).expect("build tables");
    tables.dump_to_dir(&dir).expect("dump tables");
    let roots = &platform.pci_roots;

    let mcfg = round_trip(&dir, blob(&tables, b"MCFG"));
    let hex = |f: fn(&PciRoot) -> String| roots.iter().map(f).collect::<Vec<_>>();
    assert_eq!(field_values(&mcfg, "Base Address"), hex(|r| format!("{:016X}", r.ecam_base)), "{mcfg}");
    assert_eq!(field_values(&mcfg, "Segment Group Number"), hex(|r| format!("{:04X}", r.segment)), "{mcfg}");
    assert_eq!(field_values(&mcfg, "Start Bus Number"), hex(|_| "00".into()), "{mcfg}");
    assert_eq!(field_values(&mcfg, "End Bus Number"), hex(|r| format!("{:02X}", r.bus_end)), "{mcfg}");

    let dsdt = disassemble(&dir, blob(&tables, b"DSDT"));
    compile(&dir, "DSDT.dsl");
    assert_eq!(dsdt.matches("Name (_HID, EisaId (\"PNP0A08\")").count(), roots.len(), "{dsdt}");
    for root in roots {
        let name = format!("PCI{:X}", root.segment);
        let node = device(&dsdt, &name);
        let (mem32, len32) = root.mem32;
        for needle in [
            format!("Name (_UID, {})", aml_int(root.segment.into())),
            format!("Name (_SEG, {})", aml_int(root.segment.into())),
            "Name (_BBN, Zero)".to_string(),
            format!("Name (_CCA, {})", aml_int(root.coherent.into())),
            format!("0x0000, // Range Minimum\n0x{:04X}, // Range Maximum", root.bus_end),
            format!("0x{mem32:08X}, // Range Minimum\n0x{:08X}, // Range Maximum", mem32 + (len32 - 1)),
            format!("0x{:016X}, // Range Minimum", root.mem64.0),
        ] {
            assert_has(node, &name, &needle);
        }
        // The legacy configuration ports are segment 0's only.
        assert_eq!(node.contains("0x0CF8, // Range Minimum"), root.segment == 0, "{name}:\n{node}");
    }
    let mbrd = device(&dsdt, "MBRD");
    assert_eq!(mbrd.matches("Memory32Fixed (ReadWrite,").count(), roots.len(), "{mbrd}");
    for root in roots {
        let len = (u64::from(root.bus_end) + 1) << 20;
        let reserved = format!("0x{:08X}, // Address Base\n0x{len:08X}, // Address Length", root.ecam_base);
        assert_has(mbrd, "MBRD", &reserved);
    }

    let viot = round_trip(&dir, blob(&tables, b"VIOT"));
    let ranges = &platform.viot.as_ref().unwrap().pci_ranges;
    let segments: Vec<String> = ranges.iter().map(|r| format!("{:04X}", r.segment)).collect();
    assert_eq!(field_values(&viot, "PCI Segment start"), segments, "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment end"), segments, "{viot}");
    let starts: Vec<String> = ranges.iter().map(|r| format!("{:08X}", r.endpoint_start)).collect();
    assert_eq!(field_values(&viot, "Endpoint start"), starts, "{viot}");
    assert_eq!(field_values(&viot, "Endpoint"), [format!("{:08X}", u32::from(bridges) << 16)], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment"), ["0000"], "the IOMMU's: {viot}");
}

#[test]
fn one_bridge() {
    check_bridges(1);
}

#[test]
fn two_bridges() {
    check_bridges(2);
}

#[test]
fn four_bridges() {
    check_bridges(4);
}

/// The hot-plug controller on two bridges, one of two hot-pluggable: the Generic Event Device,
/// the power button and the 31 slots of segment 1, clean through `iasl -d` and a recompile, with
/// the objects `acpiphp` needs on each slot.
#[test]
fn hotplug_slots_and_the_generic_event_device() {
    let dir = work_dir("hotplug");
    require_viot_support(&dir);
    let mut platform = platform(2);
    platform.hotplug =
        Some(HotplugController { base: 0xfeb0_0000, gsi: 23, power_button: true, segments: vec![1] });
    let tables = build(&platform, 0xe_0000..0x10_0000).expect("build tables");
    tables.dump_to_dir(&dir).expect("dump tables");
    let dsdt = disassemble(&dir, blob(&tables, b"DSDT"));
    compile(&dir, "DSDT.dsl");

    let ged = device(&dsdt, "\\_SB.GED0");
    for needle in [
        "Name (_HID, \"ACPI0013\" /* Generic Event Device */)",
        "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n{\n0x00000017,\n}",
        "OperationRegion (GREG, SystemMemory, 0xFEB00000, 0x18)",
        "Method (_EVT, 1, Serialized)",
        "Notify (\\_SB.PWRB, 0x80)",
        "\\_SB.PCI1.PSCN ()",
    ] {
        assert_has(ged, "GED0", needle);
    }
    assert!(!ged.contains("PCI0.PSCN"), "segment 0 is not hot-pluggable:\n{ged}");
    assert_has(
        device(&dsdt, "\\_SB.PWRB"),
        "PWRB",
        "Name (_HID, EisaId (\"PNP0C0C\") /* Power Button Device */)",
    );
    assert_has(&dsdt, "DSDT", "Scope (\\_SB.PCI1)");
    assert_eq!(dsdt.matches("Method (_EJ0, 1, Serialized)").count(), 31, "{dsdt}");
    for slot in [1u32, 0x1f] {
        let name = format!("S{slot:03X}");
        let node = device(&dsdt, &name);
        assert_has(node, &name, &format!("Name (_ADR, 0x{:08X})", slot << 16));
        assert_has(node, &name, &format!("Name (_SUN, 0x{:02X})", 32 + slot));
        assert_has(node, &name, "Method (_STA, 0, Serialized)");
        assert_has(node, &name, "Return (0x0F)");
        assert_has(&dsdt, "PSCN", &format!("Notify ({name}, One)"));
        assert_has(&dsdt, "PSCN", &format!("Notify ({name}, 0x03)"));
    }
}
