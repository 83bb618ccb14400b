//! `describe`'s rows against the firmware bytes they claim to describe,
//! for every test configuration: the ACPI tables (x86_64) and the device
//! tree (aarch64) are decoded on their own ([`super::decode`]) and every
//! row's DMA properties, addresses and object names are checked against
//! them; and the JSON rendering reads back into the same rows.

use super::decode::{dt_facts, Facts, MmioFact};
use super::rows::{Address, Description, Interrupt, Kind};
use super::test_machines::CONFIGURATIONS;
use super::{describe, render, Described, Format, Request};
use crate::test_utils::options;
use crate::Arch;

fn describe_on(args: &[&str], arch: Arch) -> crate::Result<Described> {
    let options = options(args);
    describe(&Request { options: &options, arch, host_memory: u64::MAX, cmdline: "", initrd_size: None })
}

fn described(args: &[&str], arch: &str) -> Described {
    let arch = if arch == "aarch64" { Arch::Aarch64 } else { Arch::X86_64 };
    describe_on(args, arch).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

/// The window position of a row's virtio-mmio address in its architecture.
fn window(arch: Arch, base: u64) -> u32 {
    arch.virtio_mmio_index(base).unwrap()
}

/// The DMA columns of every row agree with what the firmware declares.
fn rows_agree_with(name: &str, d: &Description, facts: &Facts) {
    let mut mmio_rows = 0;
    for r in &d.devices {
        let what = format!("{name}: {}", r.id);
        if r.kind != Kind::PciHostBridge {
            assert_eq!(r.in_iommu_scope, r.endpoint.is_some(), "{what}");
        }
        match (r.kind, r.address) {
            (Kind::PciHostBridge, Address::Pci { segment, .. }) => {
                let f = &facts.pci[&segment];
                assert_eq!(r.coherent, f.coherent, "{what}");
                assert_eq!(r.in_iommu_scope, !f.ranges.is_empty(), "{what}");
            }
            (_, Address::Pci { segment, bus, device, function }) => {
                let f = &facts.pci[&segment];
                let bdf = u16::from(bus) << 8 | u16::from(device) << 3 | u16::from(function);
                assert_eq!(r.coherent, f.coherent, "{what}: a PCI device has its bridge's coherency");
                assert_eq!(r.endpoint, f.endpoint(bdf), "{what}");
                assert_eq!(r.interrupt, Interrupt::MsiX, "{what}");
            }
            (_, Address::Mmio { base }) => {
                mmio_rows += 1;
                let f = facts.mmio[&window(d.arch, base)];
                let expected = MmioFact {
                    coherent: r.coherent,
                    endpoint: r.endpoint,
                    is_iommu: r.kind == Kind::VirtioIommu,
                };
                assert_eq!(f, expected, "{what}");
            }
        }
        // The contract: ACCESS_PLATFORM exactly when not bypassing, and a
        // bypassing device is never in scope.
        if r.kind != Kind::PciHostBridge {
            assert_eq!(r.access_platform, Some(!r.direct_ram_access), "{what}");
        }
        if r.direct_ram_access && r.kind != Kind::PciHostBridge {
            assert!(!r.in_iommu_scope, "{what}");
        }
    }
    assert_eq!(mmio_rows, facts.mmio.len(), "{name}: one row per virtio-mmio window");
    let bridges = d.devices.iter().filter(|r| r.kind == Kind::PciHostBridge).count();
    assert_eq!(bridges, facts.pci.len(), "{name}: one row per host bridge");
}

#[test]
fn rows_agree_with_the_acpi_tables() {
    use super::decode::{acpi_facts, dsdt_devices, viot_nodes, ViotNode as Node};
    use super::rows::ViotNode;
    for (name, args) in CONFIGURATIONS {
        let d = described(args, "x86_64");
        let tables = d.acpi.as_ref().unwrap();
        rows_agree_with(name, &d.description, &acpi_facts(tables));
        // The names, _CCA and VIOT nodes each row gives are the tables'.
        let dsdt = dsdt_devices(&tables.find(*b"DSDT").unwrap().bytes);
        let viot = tables.find(*b"VIOT").map(|v| viot_nodes(&v.bytes)).unwrap_or_default();
        let ranges: Vec<Node> = viot.iter().copied().filter(|n| matches!(n, Node::PciRange(..))).collect();
        let endpoints: Vec<Node> =
            viot.iter().copied().filter(|n| matches!(n, Node::MmioEndpoint(..))).collect();
        for r in &d.description.devices {
            let what = format!("{name}: {}", r.id);
            let acpi = r.acpi.as_ref().unwrap_or_else(|| panic!("{what}: no ACPI object"));
            assert!(r.dt.is_none());
            let object = acpi.path.strip_prefix("\\_SB.").unwrap();
            let dev = dsdt.iter().find(|x| x.name == object).unwrap_or_else(|| panic!("{what}: no {object}"));
            assert_eq!(dev.cca, Some(u64::from(acpi.cca)), "{what}");
            assert_eq!(acpi.cca, u8::from(r.coherent), "{what}");
            match r.address {
                Address::Mmio { base } => {
                    assert_eq!(dev.memory32.map(u64::from), Some(base), "{what}");
                    assert!(matches!(r.interrupt, Interrupt::Gsi(_)), "{what}");
                }
                Address::Pci { segment, .. } => assert_eq!(dev.seg, Some(u64::from(segment)), "{what}"),
            }
            match (&acpi.viot, r.address) {
                (None, _) => assert!(r.endpoint.is_none() && r.kind != Kind::VirtioIommu, "{what}"),
                (Some(ViotNode::VirtioIommuPci), Address::Pci { segment, device, .. }) => {
                    assert!(viot.contains(&Node::IommuPci(segment, u16::from(device) << 3)), "{what}")
                }
                (Some(ViotNode::VirtioIommuMmio), Address::Mmio { base }) => {
                    assert!(viot.contains(&Node::IommuMmio(base)), "{what}")
                }
                (Some(ViotNode::PciRange(i)), Address::Pci { segment, bus, device, function }) => {
                    let bdf = u16::from(bus) << 8 | u16::from(device) << 3 | u16::from(function);
                    let Node::PciRange(s, first, last, ep) = ranges[*i] else { unreachable!() };
                    assert!(s == segment && (first..=last).contains(&bdf), "{what}: {:?}", ranges[*i]);
                    assert_eq!(r.endpoint, Some(ep + u32::from(bdf - first)), "{what}");
                }
                (Some(ViotNode::MmioEndpoint(i)), Address::Mmio { base }) => {
                    assert_eq!(endpoints[*i], Node::MmioEndpoint(base, r.endpoint.unwrap()), "{what}");
                }
                (Some(ViotNode::PciRanges(list)), Address::Pci { segment, .. }) => {
                    let mine: Vec<usize> = ranges
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| matches!(n, Node::PciRange(s, ..) if *s == segment))
                        .map(|(i, _)| i)
                        .collect();
                    assert_eq!(list, &mine, "{what}");
                }
                (node, address) => panic!("{what}: {node:?} at {address:?}"),
            }
        }
    }
}

/// A VT-d machine's rows name the DMAR's DRHDs and scopes, which name
/// exactly the translated functions.
#[test]
fn rows_agree_with_the_dmar() {
    use super::decode::{dmar_units, dsdt_devices};
    use super::rows::DmarEntry;
    let args = [
        "--iommu",
        "type=vtd",
        "--pci-bridge",
        "id=hp,hotplug=on",
        "--pci-bridge",
        "id=fast,direct-ram-access=on",
        "--pci-bridge",
        "id=more",
        "--disk",
        "path=a,transport=pci",
        "--disk",
        "path=b,transport=pci,direct-ram-access=on",
        "--disk",
        "path=c,transport=pci,bridge=fast",
        "--disk",
        "path=d,transport=pci,bridge=more",
        "--rng",
        "transport=pci",
        "--console",
        "transport=pci,bridge=hp",
    ];
    let d = described(&args, "x86_64");
    let tables = d.acpi.as_ref().unwrap();
    assert!(tables.find(*b"VIOT").is_none());
    let (width, units) = dmar_units(&tables.find(*b"DMAR").expect("a DMAR").bytes);
    assert_eq!(width, 47, "48-bit host address width");
    let dsdt = dsdt_devices(&tables.find(*b"DSDT").unwrap().bytes);
    // Every DRHD's segment is a host bridge of the DSDT.
    for u in &units {
        assert!(dsdt.iter().any(|x| x.seg == Some(u64::from(u.segment))), "{u:?}");
    }
    let mut named = 0;
    for r in &d.description.devices {
        let what = format!("{}: {:?}", r.id, r.acpi);
        let acpi = r.acpi.as_ref().unwrap();
        assert!(acpi.viot.is_none(), "{what}");
        let Address::Pci { segment, bus, device, function } = r.address else { panic!("{what}") };
        let bdf = u16::from(bus) << 8 | u16::from(device) << 3 | u16::from(function);
        match (r.kind, acpi.dmar) {
            (Kind::PciHostBridge, None) => {
                assert!(units.iter().all(|u| u.segment != segment) && !r.in_iommu_scope, "{what}")
            }
            (Kind::PciHostBridge, Some(DmarEntry::Drhd { drhd })) => {
                assert!(
                    units[drhd].segment == segment && !units[drhd].include_all && r.in_iommu_scope,
                    "{what}"
                )
            }
            (_, Some(DmarEntry::IncludePciAll { drhd })) => {
                assert!(
                    units[drhd].segment == segment && units[drhd].include_all && r.in_iommu_scope,
                    "{what}"
                )
            }
            (_, Some(DmarEntry::Scope { drhd, scope })) => {
                named += 1;
                assert_eq!((units[drhd].segment, units[drhd].functions[scope]), (segment, bdf), "{what}");
                assert_eq!(r.endpoint, Some(u32::from(segment) << 16 | u32::from(bdf)), "{what}");
                assert_eq!(r.access_platform, Some(true), "{what}");
            }
            (_, None) => {
                assert!(!r.in_iommu_scope && r.endpoint.is_none() && r.direct_ram_access, "{what}");
                assert!(units.iter().all(|u| u.segment != segment || !u.functions.contains(&bdf)), "{what}");
            }
            (kind, entry) => panic!("{kind:?} with {entry:?}"),
        }
    }
    let scopes: usize = units.iter().map(|u| u.functions.len()).sum();
    assert_eq!(named, scopes, "every scope entry is a row's");
    assert_eq!(scopes, 3, "disk0, rng0 and disk3");
    // The table names the DMAR column; JSON carries the entries.
    let text = render(&d.description, Format::Table).unwrap();
    assert!(text.lines().next().unwrap().ends_with("VIOT  DMAR"), "{text}");
    assert!(text.contains("DRHD 1 INCLUDE_PCI_ALL"), "{text}");
    let json = render(&d.description, Format::Json).unwrap();
    assert!(json.contains("\"dmar\": {\n") && json.contains("\"include-pci-all\""), "{json}");
    let back: Description = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d.description, "the JSON reads back into the same rows");
}

#[test]
fn a_machine_without_vt_d_has_no_dmar_column() {
    let d = described(&["--iommu", "--disk", "path=a,transport=pci"], "x86_64");
    let text = render(&d.description, Format::Table).unwrap();
    assert!(text.lines().next().unwrap().ends_with("VIOT"), "{text}");
    assert!(!render(&d.description, Format::Json).unwrap().contains("dmar"));
}

#[test]
fn rows_agree_with_the_device_tree() {
    for (name, args) in CONFIGURATIONS {
        let d = described(args, "aarch64");
        let blob = d.dtb.as_ref().unwrap();
        rows_agree_with(name, &d.description, &dt_facts(blob));
        let root = dmavm_fdt::parse(blob).unwrap().root;
        for r in &d.description.devices {
            let what = format!("{name}: {}", r.id);
            let dt = r.dt.as_ref().unwrap_or_else(|| panic!("{what}: no node"));
            assert!(r.acpi.is_none());
            let node = root.find(&dt.path).unwrap_or_else(|| panic!("{what}: no {}", dt.path));
            // A PCI function's coherency and scope are its bridge's node's.
            let holder = match (r.kind, r.address) {
                (Kind::VirtioIommu, Address::Pci { .. }) => {
                    root.find(dt.path.rsplit_once('/').unwrap().0).unwrap()
                }
                _ => node,
            };
            assert_eq!(dt.dma_coherent, holder.has("dma-coherent"), "{what}");
            assert_eq!(dt.iommus, node.u32s("iommus").map(|c| c[1]), "{what}");
            let map: Vec<u32> = holder.u32s("iommu-map").unwrap_or_default();
            for e in &dt.iommu_map {
                let found = map
                    .chunks(4)
                    .any(|c| (c[0], c[2], c[3]) == (u32::from(e.rid_base), e.endpoint_base, e.length));
                assert!(found, "{what}: {e} not in {map:x?}");
            }
            match (r.kind, r.address) {
                (Kind::PciHostBridge, _) => assert_eq!(dt.iommu_map.len(), map.len() / 4, "{what}"),
                (Kind::VirtioIommu, _) => assert!(node.has("#iommu-cells"), "{what}"),
                (_, Address::Pci { .. }) => {
                    assert_eq!(dt.iommu_map.len(), usize::from(r.in_iommu_scope), "{what}")
                }
                (_, Address::Mmio { base }) => {
                    let reg = node.u32s("reg").unwrap();
                    assert_eq!(u64::from(reg[0]) << 32 | u64::from(reg[1]), base, "{what}");
                    let Interrupt::Spi(spi) = r.interrupt else { panic!("{what}: {:?}", r.interrupt) };
                    assert_eq!(node.u32s("interrupts").unwrap()[1], spi, "{what}");
                }
            }
        }
    }
}

#[test]
fn json_reads_back_into_the_same_rows() {
    for arch in ["x86_64", "aarch64"] {
        for (name, args) in CONFIGURATIONS {
            let d = described(args, arch);
            let json = render(&d.description, Format::Json).unwrap();
            let back: Description =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}\n{json}"));
            assert_eq!(back, d.description, "{name} ({arch})");
            // And the table is made of the same facts.
            assert_eq!(render(&back, Format::Table).unwrap(), render(&d.description, Format::Table).unwrap());
        }
    }
}

#[test]
fn json_spells_values_for_tools() {
    let d = described(&["--iommu", "--disk", "path=a", "--rng", "transport=pci"], "x86_64");
    let value: serde_json::Value =
        serde_json::from_str(&render(&d.description, Format::Json).unwrap()).unwrap();
    assert_eq!(value["arch"], "x86_64");
    let disk = &value["devices"][2];
    assert_eq!(disk["id"], "disk0");
    assert_eq!(disk["kind"], "virtio-blk");
    assert_eq!(disk["address"]["mmio"]["base"], 0xd000_0000u64);
    assert_eq!(disk["interrupt"]["gsi"], 5);
    assert_eq!(disk["endpoint"], 0x1_0000);
    assert_eq!(disk["acpi"]["path"], "\\_SB.VR00");
    assert_eq!(disk["acpi"]["viot"]["mmio-endpoint"], 0);
    let rng = &value["devices"][3];
    assert_eq!(rng["address"]["pci"]["device"], 2);
    assert_eq!(rng["interrupt"], "msi-x");
    assert_eq!(value["devices"][0]["access_platform"], serde_json::Value::Null);
}

#[test]
fn one_row_per_bridge_and_device_in_model_order() {
    let d = described(CONFIGURATIONS[4].1, "x86_64");
    let ids: Vec<&str> = d.description.devices.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["pci0", "slow", "hp", "iommu0", "disk0", "disk1", "disk2", "rng0"]);
    let paths: Vec<&str> =
        d.description.devices.iter().map(|r| r.acpi.as_ref().unwrap().path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "\\_SB.PCI0",
            "\\_SB.PCI1",
            "\\_SB.PCI2",
            "\\_SB.PCI1",
            "\\_SB.PCI0",
            "\\_SB.PCI1",
            "\\_SB.PCI2",
            "\\_SB.VR00"
        ]
    );
}

#[test]
fn a_rejected_configuration_fails_as_run_fails() {
    for (args, needle) in [
        (&["--disk", "path=a,transport=pci,bridge=nope"][..], "disk0: bridge=nope: no such PCI host bridge"),
        (&["--memory", "8M"], "--memory 8 MiB is too small"),
    ] {
        let err = describe_on(args, Arch::X86_64).unwrap_err().to_string();
        let o = options(args);
        let run = crate::layout::check_memory(o.memory, u64::MAX)
            .and_then(|()| crate::Machine::new(&o, Arch::X86_64))
            .unwrap_err();
        assert_eq!(err, run.to_string());
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn findings_are_the_checks_run_applies() {
    use super::rows::FindingRow;
    let args = ["--disk", "path=a,transport=pci,coherent=off", "--rng", "coherent=off"];
    let d = described(&args, "x86_64");
    let findings = crate::checks::check(&super::test_machines::machine(&args));
    assert_eq!(d.refusal, crate::checks::refusal(&findings));
    assert!(d.refusal.as_deref().is_some_and(|r| r.starts_with("[DMA002] disk0")), "{:?}", d.refusal);
    let rows: Vec<FindingRow> = findings.iter().map(FindingRow::from).collect();
    assert_eq!(d.description.findings, rows);
    assert_eq!(d.description.devices.len(), 3, "the rows of a refused machine, where they can be built");
    let table = render(&d.description, Format::Table).unwrap();
    assert!(table.contains("\nwarning: [DMA101] rng0: declared coherent=off"), "{table}");
}

#[test]
fn the_virtio_iommu_row_says_its_boot_bypass() {
    for (keys, on) in [("", false), ("boot-bypass=off", false), ("boot-bypass=on", true)] {
        let d = described(&["--iommu", keys, "--disk", "path=a,transport=pci"], "x86_64");
        let bypass: Vec<Option<bool>> = d.description.devices.iter().map(|r| r.boot_bypass).collect();
        assert_eq!(bypass, [None, Some(on), None], "{keys}");
        let text = render(&d.description, Format::Table).unwrap();
        let state = if on { "on" } else { "off" };
        assert!(
            text.contains(&format!("\niommu0: boot-bypass={state}: a device the guest's driver")),
            "{text}"
        );
        let json = render(&d.description, Format::Json).unwrap();
        assert_eq!(json.matches(&format!("\"boot_bypass\": {on}")).count(), 1, "{json}");
    }
    // No virtio-iommu, no note.
    let d = described(&["--iommu", "type=vtd", "--disk", "path=a,transport=pci"], "x86_64");
    assert!(!render(&d.description, Format::Table).unwrap().contains("boot-bypass"));
}
