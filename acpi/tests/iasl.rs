//! The tables of a sample two-CPU machine, checked by ACPICA's `iasl` (Debian package
//! acpica-tools, installed by resources/setup.sh): every table must disassemble without any
//! warning or error, recompile without any error, warning or remark to the same bytes, and say
//! what we meant. A missing `iasl` fails the test: it must not pass without having checked.
//!
//! `iasl -d` cannot take a bare RSDP (its binary detection wants a table header with a
//! four-character signature, and the RSDP's is "RSD PTR "), so the RSDP is checked the other way
//! round: iasl compiles the RSDP we mean from its data-table source, computing both checksums
//! itself, and the result must equal our bytes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;

use common::*;
use dmavm_acpi::{
    build, AcpiTables, InterruptOverride, IoApic, PciRoot, Platform, Polarity, ResetRegister, SerialPort,
    SleepRegisters, TriggerMode, Viot, ViotIommu, ViotMmioEndpoint, ViotPciRange, VirtioMmioDevice,
    RSDP_SIGNATURE,
};

fn sample_platform() -> Platform {
    Platform {
        cpus: vec![0, 1],
        ioapic: IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
        isa_overrides: vec![InterruptOverride {
            isa_irq: 0,
            gsi: 2,
            polarity: Polarity::Conforming,
            trigger: TriggerMode::Conforming,
        }],
        sleep: SleepRegisters { control_port: 0x600, status_port: 0x601, s5_slp_typ: 5 },
        reset: ResetRegister { port: 0x602, value: 1 },
        serial_ports: vec![SerialPort { io_base: 0x3f8, irq: 4, uid: 1 }],
        // Both coherency values, so the test sees each `_CCA` encoding.
        virtio_mmio: vec![
            VirtioMmioDevice { base: 0xd000_0000, size: 0x200, gsi: 5, coherent: true },
            VirtioMmioDevice { base: 0xd000_1000, size: 0x200, gsi: 6, coherent: false },
        ],
        // Two segments with both coherency values; the second has no 64-bit window and does
        // not start at bus 0.
        pci_roots: vec![
            PciRoot {
                segment: 0,
                bus_start: 0,
                bus_end: 0xff,
                ecam_base: 0xb000_0000,
                mem32: (0xc000_0000, 0x1000_0000),
                mem64: (0x100_0000_0000, 0x10_0000_0000),
                coherent: true,
            },
            PciRoot {
                segment: 1,
                bus_start: 0x10,
                bus_end: 0x1f,
                ecam_base: 0xa000_0000,
                mem32: (0xe000_0000, 0x0800_0000),
                mem64: (0, 0),
                coherent: false,
            },
        ],
        viot: None,
        dmar: None,
        hotplug: None,
    }
}

#[test]
fn iasl_accepts_every_table() {
    let dir = work_dir("tables");
    let tables = build(&sample_platform(), 0xe_0000..0x10_0000).expect("build tables");
    let written = tables.dump_to_dir(&dir).expect("dump tables");
    assert_eq!(written.len(), tables.blobs.len());

    let mut dsl = std::collections::HashMap::new();
    for b in tables.blobs.iter().filter(|b| b.signature != RSDP_SIGNATURE) {
        let name = b.signature_name();
        dsl.insert(name.clone(), disassemble(&dir, b));

        // Recompiling the disassembly must be clean and give back the same table, apart from
        // the creator fields iasl writes as its own (and the checksum that covers them). The
        // DSDT's AML is allowed to differ: iasl optimizes name paths when it compiles.
        let aml = compile(&dir, &format!("{name}.dsl"));
        if name != "DSDT" {
            assert_eq!(aml.len(), b.bytes.len(), "{name} recompiled length");
            assert_eq!(aml[..9], b.bytes[..9], "{name} signature, length, revision");
            assert_eq!(aml[10..28], b.bytes[10..28], "{name} OEM fields");
            assert_eq!(aml[HEADER_LEN..], b.bytes[HEADER_LEN..], "{name} body round trip");
        }
    }

    let fadt = &dsl["FACP"];
    for needle in [
        "Revision : 06",
        "FADT Minor Revision : 05",
        "Hardware Reduced (V5) : 1",
        "Reset Register Supported (V2) : 1",
        "Control Method Power Button (V1) : 1",
        "Control Method Sleep Button (V1) : 1",
        "8042 Present on ports 60/64 (V2) : 0",
        "VGA Not Present (V4) : 1",
        "CMOS RTC Not Present (V5) : 1",
        "Value to cause reset : 01",
        "Address : 0000000000000602",
        "Address : 0000000000000600",
        "Address : 0000000000000601",
        "Space ID : 01 [SystemIO]",
        "FACS Address : 0000000000000000",
        &format!("DSDT Address : {:016X}", blob(&tables, b"DSDT").addr),
        "Hypervisor ID : 0000004D56414D44", // "DMAVM\0\0\0" read as a little-endian u64
    ] {
        assert_has(fadt, "FADT", needle);
    }

    let madt = &dsl["APIC"];
    for needle in [
        "Revision : 06",
        "Local Apic Address : FEE00000",
        "PC-AT Compatibility : 0",
        "Local Apic ID : 00",
        "Local Apic ID : 01",
        "Processor Enabled : 1",
        "Subtable Type : 01 [I/O APIC]",
        "Address : FEC00000",
        "Subtable Type : 02 [Interrupt Source Override]",
        "Subtable Type : 04 [Local APIC NMI]",
        "Processor ID : FF",
        "Interrupt Input LINT : 01",
    ] {
        assert_has(madt, "MADT", needle);
    }
    assert_eq!(madt.matches("[Processor Local APIC]").count(), 2, "one local APIC per CPU:\n{madt}");

    let xsdt = &dsl["XSDT"];
    assert_has(xsdt, "XSDT", &format!("ACPI Table Address 0 : {:016X}", blob(&tables, b"FACP").addr));
    assert_has(xsdt, "XSDT", &format!("ACPI Table Address 1 : {:016X}", blob(&tables, b"APIC").addr));
    assert_has(xsdt, "XSDT", &format!("ACPI Table Address 2 : {:016X}", blob(&tables, b"MCFG").addr));
    assert!(!xsdt.contains("ACPI Table Address 3"), "XSDT lists only FADT, MADT and MCFG:\n{xsdt}");

    // One allocation per host bridge, in order; the base address is that of bus 0 of the segment.
    let mcfg = &dsl["MCFG"];
    assert_has(mcfg, "MCFG", "Revision : 01");
    assert_eq!(field_values(mcfg, "Base Address"), ["00000000B0000000", "00000000A0000000"], "{mcfg}");
    assert_eq!(field_values(mcfg, "Segment Group Number"), ["0000", "0001"], "{mcfg}");
    assert_eq!(field_values(mcfg, "Start Bus Number"), ["00", "10"], "{mcfg}");
    assert_eq!(field_values(mcfg, "End Bus Number"), ["FF", "1F"], "{mcfg}");

    let dsdt = &dsl["DSDT"];
    // One processor device per MADT local APIC, its _UID being that entry's Processor ID (ACPI
    // 6.5 sections 5.2.12.2 and 8.4): the MADT above says IDs 00 and 01, and NMI for all (FF). The
    // comment iasl adds to the _HID shows it knows the ID as a processor device.
    assert_eq!(field_values(madt, "Processor ID"), ["00", "01", "FF"], "{madt}");
    assert_eq!(
        dsdt.matches("Name (_HID, \"ACPI0007\" /* Processor Device */)").count(),
        2,
        "one processor device per CPU:\n{dsdt}"
    );
    for (name, uid) in [("C000", "Zero"), ("C001", "One")] {
        let device = device(dsdt, name);
        assert_has(device, name, "Name (_HID, \"ACPI0007\" /* Processor Device */)");
        assert_has(device, name, &format!("Name (_UID, {uid})"));
    }
    assert!(dsdt.find("Device (C000)") < dsdt.find("Device (COM1)"), "processors first:\n{dsdt}");
    for needle in [
        "Name (\\_S5, Package (0x04)",
        "0x05,",
        "Device (COM1)",
        "Name (_HID, EisaId (\"PNP0501\")",
        "Name (_UID, One)",
        "IO (Decode16,",
        "0x03F8, // Range Minimum",
        "0x03F8, // Range Maximum",
        "0x08, // Length",
        "IRQNoFlags ()\n{4}",
    ] {
        assert_has(dsdt, "DSDT", needle);
    }
    // Each virtio-mmio device with its window, its interrupt and its own coherency.
    for (name, base, gsi, cca) in
        [("VR00", "0xD0000000", "0x00000005", "One"), ("VR01", "0xD0001000", "0x00000006", "Zero")]
    {
        let device = device(dsdt, name);
        for needle in [
            "Name (_HID, \"LNRO0005\")".to_string(),
            format!("Name (_CCA, {cca})"),
            "Memory32Fixed (ReadWrite,".to_string(),
            format!("{base}, // Address Base"),
            "0x00000200, // Address Length".to_string(),
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )".to_string(),
            gsi.to_string(),
        ] {
            assert_has(device, name, &needle);
        }
    }

    // Each PCI host bridge: its identity, segment, root bus, coherency and windows.
    let pci0 = device(dsdt, "PCI0");
    let pci1 = device(dsdt, "PCI1");
    for (name, device, uid, bbn, cca) in
        [("PCI0", pci0, "Zero", "Zero", "One"), ("PCI1", pci1, "One", "0x10", "Zero")]
    {
        for needle in [
            "Name (_HID, EisaId (\"PNP0A08\")".to_string(),
            "Name (_CID, EisaId (\"PNP0A03\")".to_string(),
            format!("Name (_UID, {uid})"),
            format!("Name (_SEG, {uid})"),
            format!("Name (_BBN, {bbn})"),
            format!("Name (_CCA, {cca})"),
            "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,".to_string(),
            "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,"
                .to_string(),
        ] {
            assert_has(device, name, &needle);
        }
        assert!(!device.contains("_PRT") && !device.contains("_OSC"), "{name}: no _PRT, no _OSC:\n{device}");
    }
    for needle in [
        // Buses 0-0xff.
        "0x0000, // Range Minimum\n0x00FF, // Range Maximum\n0x0000, // Translation Offset\n0x0100, // Length",
        // The legacy configuration ports, on segment 0 only.
        "IO (Decode16,\n0x0CF8, // Range Minimum\n0x0CF8, // Range Maximum\n0x00, // Alignment\n0x08, // Length",
        "0xC0000000, // Range Minimum\n0xCFFFFFFF, // Range Maximum\n0x00000000, // Translation Offset\n\
         0x10000000, // Length",
        "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
        "0x0000010000000000, // Range Minimum\n0x0000010FFFFFFFFF, // Range Maximum\n\
         0x0000000000000000, // Translation Offset\n0x0000001000000000, // Length",
    ] {
        assert_has(pci0, "PCI0", needle);
    }
    for needle in [
        "0x0010, // Range Minimum\n0x001F, // Range Maximum\n0x0000, // Translation Offset\n0x0010, // Length",
        "0xE0000000, // Range Minimum\n0xE7FFFFFF, // Range Maximum\n0x00000000, // Translation Offset\n\
         0x08000000, // Length",
    ] {
        assert_has(pci1, "PCI1", needle);
    }
    assert!(
        !pci1.contains("IO (") && !pci1.contains("QWordMemory"),
        "PCI1: no CF8 ports, no 64-bit window:\n{pci1}"
    );
    // The ECAM regions actually decoded (PCI1: buses 0x10-0x1f) as motherboard resources.
    let mbrd = device(dsdt, "MBRD");
    for needle in [
        "Name (_HID, EisaId (\"PNP0C02\")",
        "0xB0000000, // Address Base\n0x10000000, // Address Length",
        "0xA1000000, // Address Base\n0x01000000, // Address Length",
    ] {
        assert_has(mbrd, "MBRD", needle);
    }
}

#[test]
fn iasl_builds_the_same_rsdp() {
    let dir = work_dir("rsdp");
    let tables = build(&sample_platform(), 0xe_0000..0x10_0000).expect("build tables");
    let rsdp = blob(&tables, &RSDP_SIGNATURE);
    assert_eq!(rsdp.addr, tables.rsdp_addr);
    let xsdt_addr = blob(&tables, b"XSDT").addr;

    // ACPI 6.5 section 5.2.5.3, in iasl's data-table syntax; iasl fills in both checksums.
    let source = format!(
        "[0008] Signature : \"RSD PTR \"\n\
         [0001] Checksum : 00\n\
         [0006] Oem ID : \"DMAVM \"\n\
         [0001] Revision : 02\n\
         [0004] RSDT Address : 00000000\n\
         [0004] Length : 00000024\n\
         [0008] XSDT Address : {xsdt_addr:016X}\n\
         [0001] Extended Checksum : 00\n\
         [0003] Reserved : 000000\n"
    );
    fs::write(dir.join("RSDP.asl"), source).unwrap();
    assert_eq!(compile(&dir, "RSDP.asl"), rsdp.bytes, "RSDP differs from what iasl builds");
}

/// The platform of [`sample_platform`] with `viot`.
fn platform_with_viot(viot: Viot) -> Platform {
    let mut platform = sample_platform();
    platform.viot = Some(viot);
    platform
}

/// Builds the tables of `platform`, checks its VIOT with iasl (clean disassembly, clean recompile
/// to the same body) and returns the XSDT and VIOT disassemblies, squeezed.
fn checked_viot(name: &str, platform: &Platform) -> (AcpiTables, String, String) {
    let dir = work_dir(name);
    require_viot_support(&dir);
    let tables = build(platform, 0xe_0000..0x10_0000).expect("build tables");
    tables.dump_to_dir(&dir).expect("dump tables");
    let dsl = round_trip(&dir, blob(&tables, b"VIOT"));
    let xsdt = disassemble(&dir, blob(&tables, b"XSDT"));
    (tables, xsdt, dsl)
}

/// The table offset of each node of a (squeezed) VIOT disassembly, from the `[XXXh` column of its
/// `Type` line, with the type as iasl names it.
fn viot_nodes(dsl: &str) -> Vec<(usize, String)> {
    dsl.lines()
        .filter_map(|l| {
            let (offset, rest) = l.strip_prefix('[')?.split_once("h ")?;
            let value = rest.split_once("] Type : ")?.1;
            Some((usize::from_str_radix(offset, 16).expect("hex offset"), value.to_owned()))
        })
        .collect()
}

/// A virtio-iommu-pci at 00:04.0 with the PCI functions in its scope split around it and around a
/// bypassed function (00:03.0), one of the two virtio-mmio devices translated and the other not.
#[test]
fn iasl_decodes_the_viot_of_a_pci_iommu() {
    let platform = platform_with_viot(Viot {
        iommu: ViotIommu::Pci { segment: 0, bdf: 0x20 },
        pci_ranges: vec![
            // 00:01.0-00:02.0 and 00:05.0, endpoint ID = BDF.
            ViotPciRange { segment: 0, bdf_start: 0x08, bdf_end: 0x10, endpoint_start: 0x08 },
            ViotPciRange { segment: 0, bdf_start: 0x28, bdf_end: 0x28, endpoint_start: 0x28 },
        ],
        mmio_endpoints: vec![ViotMmioEndpoint { base: 0xd000_0000, endpoint: 0x1_0000 }],
    });
    let (tables, xsdt, viot) = checked_viot("viot-pci", &platform);

    // Listed in the XSDT, after the MCFG.
    assert_has(&xsdt, "XSDT", &format!("ACPI Table Address 3 : {:016X}", blob(&tables, b"VIOT").addr));
    assert!(!xsdt.contains("ACPI Table Address 4"), "{xsdt}");

    assert_has(&viot, "VIOT", "Revision : 00");
    assert_eq!(field_values(&viot, "Node count"), ["0004"], "{viot}");
    assert_eq!(field_values(&viot, "Node offset"), ["0030"], "{viot}");
    // Exactly these nodes, each 8-byte aligned, the IOMMU first at the node offset.
    assert_eq!(
        viot_nodes(&viot),
        [
            (0x30, "03 [VirtIO-PCI IOMMU]".to_owned()),
            (0x40, "01 [PCI Range]".to_owned()),
            (0x58, "01 [PCI Range]".to_owned()),
            (0x70, "02 [MMIO Endpoint]".to_owned()),
        ],
        "{viot}"
    );
    assert_eq!(field_values(&viot, "Length"), ["0010", "0018", "0018", "0018"], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment"), ["0000"], "{viot}");
    assert_eq!(field_values(&viot, "PCI BDF number"), ["0020"], "{viot}");
    assert_eq!(field_values(&viot, "Endpoint start"), ["00000008", "00000028"], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment start"), ["0000", "0000"], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment end"), ["0000", "0000"], "{viot}");
    assert_eq!(field_values(&viot, "PCI BDF start"), ["0008", "0028"], "{viot}");
    assert_eq!(field_values(&viot, "PCI BDF end"), ["0010", "0028"], "{viot}");
    assert_eq!(field_values(&viot, "Endpoint"), ["00010000"], "{viot}");
    assert_eq!(field_values(&viot, "Base address"), ["00000000D0000000"], "{viot}");
    // Every endpoint node points at the IOMMU node.
    assert_eq!(field_values(&viot, "Output node"), ["0030", "0030", "0030"], "{viot}");
}

/// A virtio-iommu on virtio-mmio translating PCI functions and the other virtio-mmio device.
#[test]
fn iasl_decodes_the_viot_of_an_mmio_iommu() {
    let mut platform = platform_with_viot(Viot {
        iommu: ViotIommu::Mmio { base: 0xd000_2000 },
        pci_ranges: vec![ViotPciRange { segment: 1, bdf_start: 0x1000, bdf_end: 0x10ff, endpoint_start: 0 }],
        mmio_endpoints: vec![ViotMmioEndpoint { base: 0xd000_1000, endpoint: 0x1_0001 }],
    });
    platform.virtio_mmio.push(VirtioMmioDevice { base: 0xd000_2000, size: 0x200, gsi: 7, coherent: true });
    let (_, _, viot) = checked_viot("viot-mmio", &platform);

    assert_eq!(field_values(&viot, "Node count"), ["0003"], "{viot}");
    assert_eq!(
        viot_nodes(&viot),
        [
            (0x30, "04 [VirtIO-MMIO IOMMU]".to_owned()),
            (0x40, "01 [PCI Range]".to_owned()),
            (0x58, "02 [MMIO Endpoint]".to_owned()),
        ],
        "{viot}"
    );
    assert_eq!(field_values(&viot, "Base address"), ["00000000D0002000", "00000000D0001000"], "{viot}");
    assert_eq!(field_values(&viot, "Endpoint start"), ["00000000"], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment start"), ["0001"], "{viot}");
    assert_eq!(field_values(&viot, "PCI Segment end"), ["0001"], "{viot}");
    assert_eq!(field_values(&viot, "PCI BDF start"), ["1000"], "{viot}");
    assert_eq!(field_values(&viot, "PCI BDF end"), ["10FF"], "{viot}");
    assert_eq!(field_values(&viot, "Endpoint"), ["00010001"], "{viot}");
    assert_eq!(field_values(&viot, "Output node"), ["0030", "0030"], "{viot}");
}
