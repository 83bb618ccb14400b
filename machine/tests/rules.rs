//! Every test machine's blob, read back with the crate's reader, says what the description
//! says: the DMA contract's rules (`dma-coherent` exactly when coherent, `iommus` exactly when
//! translated, `iommu-map` exactly the translated requester IDs and none on a bypassing bridge,
//! the IOMMU never in its own scope), every phandle resolving, and the fixed nodes. No stored
//! blob is compared: only properties are asserted.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{bdf, machines, mmio_endpoint, pci_endpoint};
use dmavm_fdt::{build, parse, Machine, Node, PciIommuScope, Uart, VirtioIommu};

fn cells64(hi: u32, lo: u32) -> u64 {
    u64::from(hi) << 32 | u64::from(lo)
}

fn tree(m: &Machine) -> Node {
    parse(&build(m).expect("build")).expect("parse").root
}

/// The node with `phandle`, or a panic naming `what` refers to it.
fn target<'a>(root: &'a Node, phandle: u32, what: &str) -> (String, &'a Node) {
    root.by_phandle(phandle).unwrap_or_else(|| panic!("{what}: phandle {phandle:#x} resolves to no node"))
}

/// The IOMMU's node: the one with `#iommu-cells`.
fn iommu_node(root: &Node) -> Option<(String, &Node)> {
    let mut found = root.walk().into_iter().filter(|(_, n)| n.has("#iommu-cells"));
    let first = found.next();
    assert!(found.next().is_none(), "more than one node with #iommu-cells");
    first
}

/// RID -> endpoint ID as a host bridge's `iommu-map` says, checking each entry's phandle.
fn iommu_map(root: &Node, bridge: &Node, path: &str) -> BTreeMap<u16, u32> {
    let mut map = BTreeMap::new();
    let Some(cells) = bridge.u32s("iommu-map") else { return map };
    assert!(!cells.is_empty() && cells.len() % 4 == 0, "{path}: iommu-map has {} cells", cells.len());
    let (iommu_path, _) = iommu_node(root).expect("iommu-map without an IOMMU node");
    for e in cells.chunks(4) {
        let (rid_base, phandle, iommu_base, len) = (e[0], e[1], e[2], e[3]);
        assert_eq!(target(root, phandle, path).0, iommu_path, "{path}: iommu-map names another node");
        assert!(len > 0, "{path}: empty iommu-map entry");
        for i in 0..len {
            let rid = u16::try_from(rid_base + i).expect("RID fits 16 bits");
            assert!(map.insert(rid, iommu_base + i).is_none(), "{path}: RID {rid:#x} mapped twice");
        }
    }
    map
}

/// The rules every machine's tree follows.
fn check(name: &str, m: &Machine) {
    let root = tree(m);
    let ctx = |what: &str| format!("{name}: {what}");

    // Root.
    assert_eq!(root.string("compatible"), Some("linux,dummy-virt"), "{}", ctx("root compatible"));
    assert_eq!(root.u32("#address-cells"), Some(2));
    assert_eq!(root.u32("#size-cells"), Some(2));
    let (gic_path, gic) = target(&root, root.u32("interrupt-parent").unwrap(), "interrupt-parent");
    assert!(gic.has("interrupt-controller"), "{}", ctx("interrupt-parent is no interrupt controller"));

    // phandles: unique, and every reference resolves to the right kind of node.
    let mut seen = HashSet::new();
    for (path, n) in root.walk() {
        if let Some(p) = n.u32("phandle") {
            assert!(seen.insert(p), "{}", ctx(&format!("phandle {p} used twice ({path})")));
        }
        if let Some(clocks) = n.u32s("clocks") {
            for c in clocks {
                assert_eq!(target(&root, c, &path).1.u32("#clock-cells"), Some(0), "{path}: clocks");
            }
        }
        if let Some(iommus) = n.u32s("iommus") {
            assert_eq!(iommus.len(), 2, "{path}: iommus is one <&viommu ID>");
            assert_eq!(target(&root, iommus[0], &path).1.u32("#iommu-cells"), Some(1), "{path}: iommus");
        }
        if let Some(msi) = n.u32s("msi-map") {
            assert_eq!(msi.len(), 4, "{path}: msi-map");
            let its = target(&root, msi[1], &path).1;
            assert!(its.has("msi-controller") && its.u32("#msi-cells") == Some(1), "{path}: msi-map target");
        }
    }

    // /chosen.
    let chosen = root.find("/chosen").expect("/chosen");
    assert_eq!(chosen.string("bootargs"), Some(m.chosen.bootargs.as_str()));
    let stdout = chosen.string("stdout-path").expect("stdout-path");
    let uart = root.find(stdout).unwrap_or_else(|| panic!("{}", ctx("stdout-path resolves to no node")));
    assert_eq!(root.find("/aliases").unwrap().string("serial0"), Some(stdout));
    let initrd = chosen.property("linux,initrd-start").zip(chosen.property("linux,initrd-end"));
    match m.chosen.initrd {
        None => {
            assert!(!chosen.has("linux,initrd-start") && !chosen.has("linux,initrd-end"), "{}", ctx("initrd"))
        }
        Some(r) => {
            let (start, end) = initrd.expect("initrd properties");
            assert_eq!(start, r.base.to_be_bytes());
            assert_eq!(end, (r.base + r.size).to_be_bytes());
        }
    }

    // Memory, CPUs, PSCI.
    let memory: Vec<&Node> = root.children.iter().filter(|c| c.name.starts_with("memory@")).collect();
    assert_eq!(memory.len(), m.memory.len(), "{}", ctx("one memory node per range"));
    for (n, r) in memory.iter().zip(&m.memory) {
        assert_eq!(n.string("device_type"), Some("memory"));
        let reg = n.u32s("reg").unwrap();
        assert_eq!((cells64(reg[0], reg[1]), cells64(reg[2], reg[3])), (r.base, r.size));
    }
    let cpus = root.find("/cpus").unwrap();
    let cells = cpus.u32("#address-cells").unwrap();
    assert_eq!(cpus.u32("#size-cells"), Some(0));
    assert_eq!(cpus.children.len(), m.cpus.len(), "{}", ctx("one cpu node per vCPU"));
    for (n, mpidr) in cpus.children.iter().zip(&m.cpus) {
        assert_eq!(n.string("device_type"), Some("cpu"));
        assert_eq!(n.string("compatible"), Some("arm,armv8"));
        assert_eq!(n.string("enable-method"), Some("psci"));
        let reg = n.u32s("reg").unwrap();
        let value = if cells == 2 { cells64(reg[0], reg[1]) } else { u64::from(reg[0]) };
        assert_eq!(reg.len() as u32, cells);
        assert_eq!(value, *mpidr, "{}", ctx("cpu reg is the MPIDR"));
        assert_eq!(n.name, format!("cpu@{mpidr:x}"));
    }
    let psci = root.find("/psci").unwrap();
    assert_eq!(psci.strings("compatible").unwrap(), ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(psci.string("method"), Some("hvc"));

    // GIC and ITS.
    assert_eq!(gic.string("compatible"), Some("arm,gic-v3"));
    assert_eq!(gic.u32("#interrupt-cells"), Some(3));
    let reg = gic.u32s("reg").unwrap();
    assert_eq!(cells64(reg[0], reg[1]), m.gic.distributor.base);
    assert_eq!(cells64(reg[4], reg[5]), m.gic.redistributors.base);
    let its = gic.children.iter().find(|c| c.string("compatible") == Some("arm,gic-v3-its"));
    assert_eq!(its.is_some(), m.gic.its.is_some(), "{}", ctx("ITS child"));
    if let Some(its) = its {
        assert!(its.has("msi-controller"));
        assert_eq!(its.u32("#msi-cells"), Some(1));
    }
    assert_eq!(gic_path, format!("/interrupt-controller@{:x}", m.gic.distributor.base));

    // Timer and UART.
    let timer = root.find("/timer").unwrap();
    assert_eq!(timer.string("compatible"), Some("arm,armv8-timer"));
    let t = &m.timer;
    assert_eq!(
        timer.u32s("interrupts").unwrap(),
        [1, t.secure_phys, 4, 1, t.phys, 4, 1, t.virt, 4, 1, t.hyp_phys, 4],
        "{}",
        ctx("four level-high PPIs")
    );
    match &m.uart {
        Uart::Pl011(u) => {
            assert_eq!(uart.strings("compatible").unwrap(), ["arm,pl011", "arm,primecell"]);
            assert_eq!(uart.u32s("interrupts").unwrap(), [0, u.spi, 4]);
            assert_eq!(uart.strings("clock-names").unwrap(), ["uartclk", "apb_pclk"]);
            for c in uart.u32s("clocks").unwrap() {
                let clock = target(&root, c, "clocks").1;
                assert_eq!(clock.string("compatible"), Some("fixed-clock"));
                assert_eq!(clock.u32("clock-frequency"), Some(u.clock_hz));
            }
        }
        Uart::Ns16550a(u) => {
            assert_eq!(uart.strings("compatible").unwrap(), ["ns16550a"]);
            assert_eq!(uart.u32s("interrupts").unwrap(), [0, u.spi, 1], "{}", ctx("an edge SPI"));
            assert_eq!(uart.u32("clock-frequency"), Some(u.clock_hz));
        }
    }

    // The IOMMU: exactly one node with #iommu-cells when there is one, never in its own scope.
    let iommu = iommu_node(&root);
    assert_eq!(iommu.is_some(), m.iommu.is_some(), "{}", ctx("IOMMU node"));
    if let Some((path, n)) = &iommu {
        assert_eq!(n.u32("#iommu-cells"), Some(1));
        assert!(!n.has("iommus"), "{}", ctx(&format!("the IOMMU {path} has iommus: in its own scope")));
        match m.iommu {
            Some(VirtioIommu::Mmio { base }) => {
                assert_eq!(*path, format!("/iommu@{base:x}"));
                assert_eq!(n.string("compatible"), Some("virtio,mmio"));
            }
            Some(VirtioIommu::Pci { segment, bdf }) => {
                let root_bridge = m.pci_roots.iter().find(|r| r.segment == segment).unwrap();
                let ecam = root_bridge.ecam_base + (u64::from(root_bridge.bus_start) << 20);
                let (device, function) = ((bdf >> 3) & 0x1f, bdf & 7);
                let unit =
                    if function == 0 { format!("{device:x}") } else { format!("{device:x},{function:x}") };
                assert_eq!(*path, format!("/pcie@{ecam:x}/iommu@{unit}"));
                assert_eq!(n.string("compatible"), Some("pci1af4,1057"));
                assert_eq!(n.u32s("reg").unwrap(), [u32::from(bdf) << 8, 0, 0, 0, 0]);
                let bridge = root.find(&format!("/pcie@{ecam:x}")).unwrap();
                let map = iommu_map(&root, bridge, path);
                assert!(!map.contains_key(&bdf), "{}", ctx("the PCI IOMMU's RID is in its own iommu-map"));
            }
            None => unreachable!(),
        }
    }

    // Endpoint IDs across the whole IOMMU scope: each used once.
    let mut endpoints: HashSet<u32> = HashSet::new();

    // virtio-mmio: dma-coherent exactly when coherent, iommus exactly when translated.
    for d in &m.virtio_mmio {
        let is_iommu = m.iommu == Some(VirtioIommu::Mmio { base: d.region.base });
        let path = format!("/{}@{:x}", if is_iommu { "iommu" } else { "virtio" }, d.region.base);
        let n = root.find(&path).unwrap_or_else(|| panic!("{}", ctx(&format!("no {path}"))));
        assert_eq!(n.string("compatible"), Some("virtio,mmio"));
        let reg = n.u32s("reg").unwrap();
        assert_eq!((cells64(reg[0], reg[1]), cells64(reg[2], reg[3])), (d.region.base, d.region.size));
        assert_eq!(n.u32s("interrupts").unwrap(), [0, d.spi, 1], "{path}: SPI, edge rising");
        assert_eq!(n.has("dma-coherent"), d.coherent, "{}", ctx(&format!("{path} dma-coherent")));
        match d.iommu_endpoint {
            None => assert!(!n.has("iommus"), "{}", ctx(&format!("{path} bypasses but has iommus"))),
            Some(id) => {
                let iommus = n.u32s("iommus").expect("translated device without iommus");
                assert_eq!(iommus[1], id, "{path}: endpoint ID");
                assert!(endpoints.insert(id), "{}", ctx(&format!("endpoint {id:#x} reused")));
            }
        }
    }
    let mmio_nodes = root.children.iter().filter(|c| c.string("compatible") == Some("virtio,mmio")).count();
    assert_eq!(mmio_nodes, m.virtio_mmio.len());

    // Host bridges.
    let bridges: Vec<&Node> =
        root.children.iter().filter(|c| c.string("compatible") == Some("pci-host-ecam-generic")).collect();
    assert_eq!(bridges.len(), m.pci_roots.len(), "{}", ctx("one node per host bridge"));
    for r in &m.pci_roots {
        let ecam = r.ecam_base + (u64::from(r.bus_start) << 20);
        let path = format!("/pcie@{ecam:x}");
        let n = root.find(&path).unwrap_or_else(|| panic!("{}", ctx(&format!("no {path}"))));
        assert_eq!(n.string("device_type"), Some("pci"));
        assert_eq!(n.u32("#address-cells"), Some(3));
        assert_eq!(n.u32("#size-cells"), Some(2));
        // No INTx routing (MSI/MSI-X only), so neither a map nor its specifier size.
        assert!(!n.has("interrupt-map") && !n.has("#interrupt-cells"), "{}", ctx(&format!("{path}: INTx")));
        assert_eq!(n.u32s("bus-range").unwrap(), [u32::from(r.bus_start), u32::from(r.bus_end)]);
        assert_eq!(n.u32("linux,pci-domain"), Some(u32::from(r.segment)));
        let buses = u64::from(r.bus_end - r.bus_start) + 1;
        let reg = n.u32s("reg").unwrap();
        assert_eq!((cells64(reg[0], reg[1]), cells64(reg[2], reg[3])), (ecam, buses << 20), "{path}: ECAM");
        // ranges: (space, PCI address, CPU address, size) per entry.
        let ranges: Vec<(u32, u64, u64, u64)> = n
            .u32s("ranges")
            .unwrap()
            .chunks(7)
            .map(|c| (c[0], cells64(c[1], c[2]), cells64(c[3], c[4]), cells64(c[5], c[6])))
            .collect();
        let mut expected = Vec::new();
        if let Some(io) = r.io {
            expected.push((0x0100_0000, 0, io.base, io.size));
        }
        expected.push((0x0200_0000, r.mem32.base, r.mem32.base, r.mem32.size));
        if let Some(w) = r.mem64 {
            expected.push((0x0300_0000, w.base, w.base, w.size));
        }
        assert_eq!(ranges, expected, "{path}: ranges");
        let rid_base = u32::from(r.bus_start) << 8;
        assert_eq!(n.u32s("msi-map").unwrap()[..], [rid_base, 2, r.its_device_base, (buses as u32) << 8][..]);
        assert_eq!(n.has("dma-coherent"), r.coherent, "{}", ctx(&format!("{path} dma-coherent")));

        let map = iommu_map(&root, n, &path);
        let translated: BTreeMap<u16, u32> = match &r.iommu {
            PciIommuScope::Bypass => {
                assert!(!n.has("iommu-map"), "{}", ctx(&format!("bypassing {path} has an iommu-map")));
                BTreeMap::new()
            }
            PciIommuScope::Ranges(list) => {
                assert_eq!(n.has("iommu-map"), !list.is_empty(), "{}", ctx(&format!("{path} iommu-map")));
                list.iter()
                    .flat_map(|e| {
                        (e.rid_start..=e.rid_end)
                            .map(move |rid| (rid, e.endpoint_start + u32::from(rid - e.rid_start)))
                    })
                    .collect()
            }
        };
        assert_eq!(
            map,
            translated,
            "{}",
            ctx(&format!("{path}: iommu-map covers exactly the translated RIDs"))
        );
        for id in map.values() {
            assert!(endpoints.insert(*id), "{}", ctx(&format!("endpoint {id:#x} reused")));
        }
    }
}

#[test]
fn every_machine_follows_the_rules() {
    for (name, m) in machines() {
        check(name, &m);
    }
}

/// The iommu-map of a bridge, as (rid-base, iommu-base, length) entries.
fn map_entries(m: &Machine, segment: u16) -> Option<Vec<(u32, u32, u32)>> {
    let root = tree(m);
    let r = m.pci_roots.iter().find(|r| r.segment == segment).unwrap();
    let bridge = root.find(&format!("/pcie@{:x}", r.ecam_base + (u64::from(r.bus_start) << 20))).unwrap();
    let cells = bridge.u32s("iommu-map")?;
    Some(
        cells
            .chunks(4)
            .map(|e| {
                assert_eq!(e[1], root.by_phandle(e[1]).unwrap().1.u32("phandle").unwrap());
                (e[0], e[2], e[3])
            })
            .collect(),
    )
}

#[test]
fn iommu_map_splits_around_bypassed_functions_and_the_iommu() {
    // mixed-iommu-pci: the IOMMU is 00:01.0 and 00:03.0 bypasses; buses 0-15.
    assert_eq!(
        map_entries(&common::mixed_iommu_pci(), 0).unwrap(),
        [(0, 0, 8), (0x9, 0x9, 0xf), (0x19, 0x19, 0x1000 - 0x19)]
    );
    // mixed-iommu-mmio: 00:02.0 and 00:05.0 bypass, the IOMMU is not on PCI.
    assert_eq!(
        map_entries(&common::mixed_iommu_mmio(), 0).unwrap(),
        [(0, 0, 0x10), (0x11, 0x11, 0x17), (0x29, 0x29, 0x1000 - 0x29)]
    );
    // two-bridges: the IOMMU is 00:02.3 of segment 0 (function 3 alone is left out); segment 1
    // is translated from endpoint 0x10000 but for 00:04.0.
    let m = common::two_bridges();
    assert_eq!(map_entries(&m, 0).unwrap(), [(0, 0, 0x13), (0x14, 0x14, 0x1000 - 0x14)]);
    assert_eq!(
        map_entries(&m, 1).unwrap(),
        [(0, pci_endpoint(1, 0), 0x20), (0x21, pci_endpoint(1, 0x21), 0x1000 - 0x21)]
    );
    assert_eq!(bdf(0, 4, 0), 0x20);
}

#[test]
fn a_bypassing_bridge_has_no_iommu_map() {
    let m = common::all_bypass();
    assert_eq!(map_entries(&m, 0), None, "PciIommuScope::Bypass");
    assert_eq!(map_entries(&m, 1), None, "no translated RID at all");
    assert_eq!(map_entries(&common::pci_only(), 0), None, "no IOMMU");
    let root = tree(&m);
    // The IOMMU exists, but nothing points at it.
    for (path, n) in root.walk() {
        assert!(!n.has("iommus") && !n.has("iommu-map"), "{path} is in the IOMMU's scope");
    }
}

#[test]
fn coherency_is_per_device_and_per_bridge() {
    let root = tree(&common::two_bridges());
    assert!(root.find("/pcie@30000000").unwrap().has("dma-coherent"));
    assert!(!root.find("/pcie@31000000").unwrap().has("dma-coherent"));
    // The PCI IOMMU inherits its bridge's coherency: no property of its own.
    assert!(!root.find("/pcie@30000000/iommu@2,3").unwrap().has("dma-coherent"));
    let root = tree(&common::mixed_iommu_mmio());
    let coherent: Vec<bool> = (0..5)
        .map(|i| {
            root.children.iter().any(|c| c.name.ends_with(&format!("@a00{i}000")) && c.has("dma-coherent"))
        })
        .collect();
    assert_eq!(coherent, [true, true, false, false, true]);
}

#[test]
fn translated_mmio_devices_name_the_iommu_with_their_endpoint() {
    let root = tree(&common::mixed_iommu_mmio());
    let viommu = root.find("/iommu@a000000").unwrap().u32("phandle").unwrap();
    assert_eq!(root.find("/virtio@a001000").unwrap().u32s("iommus").unwrap(), [viommu, mmio_endpoint(1)]);
    assert!(!root.find("/virtio@a002000").unwrap().has("iommus"));
    assert_eq!(root.find("/virtio@a003000").unwrap().u32s("iommus").unwrap(), [viommu, mmio_endpoint(3)]);
    assert!(!root.find("/virtio@a004000").unwrap().has("iommus"));
}

#[test]
fn cpus_with_aff3_get_two_address_cells() {
    let root = tree(&common::aff3_cpus());
    let cpus = root.find("/cpus").unwrap();
    assert_eq!(cpus.u32("#address-cells"), Some(2));
    assert_eq!(cpus.find("cpu@100000001").unwrap().u32s("reg").unwrap(), [1, 1]);
    let root = tree(&common::two_bridges());
    let cpus = root.find("/cpus").unwrap();
    assert_eq!(cpus.u32("#address-cells"), Some(1));
    assert_eq!(cpus.find("cpu@103").unwrap().u32("reg"), Some(0x103), "vCPU 19: Aff1 1, Aff0 3");
}
