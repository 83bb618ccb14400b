use super::*;
use crate::options::{parse_console, parse_disk, parse_rng};
use crate::test_utils::machine_for;
use crate::Arch;

const BRIDGES: &[&str] = &[
    "--iommu",
    "--pci-bridge",
    "id=hpt,hotplug=on",
    "--pci-bridge",
    "id=hpb,hotplug=on,direct-ram-access=on",
    "--pci-bridge",
    "id=fixed",
];

fn machine(extra: &[&str]) -> Machine {
    let args: Vec<&str> = BRIDGES.iter().chain(extra).copied().collect();
    machine_for(Arch::X86_64, &args)
}

/// A device added at run time is the device a boot with it would have:
/// same name, slot, coherency and DMA path, in either scope.
#[test]
fn a_hot_added_device_is_placed_as_at_boot() {
    for keys in [
        "path=a,transport=pci,bridge=hpt",
        "path=a,transport=pci,bridge=hpb",
        "path=a,transport=pci,bridge=hpt,slot=7,id=data",
    ] {
        let booted = machine(&["--disk", keys]);
        let added = machine(&[]).hot_add(&parse_disk(keys).unwrap()).unwrap();
        assert_eq!(added.machine, booted, "{keys}");
        assert_eq!(Some(&added.device), booted.devices.last(), "{keys}");
    }
}

#[test]
fn scope_follows_the_bridge() {
    let m = machine(&[]);
    let t = m.hot_add(&parse_disk("path=a,transport=pci,bridge=hpt").unwrap()).unwrap();
    // Segment 1, slot 1: endpoint 0x1_0008.
    assert_eq!(t.device.dma, DmaPath::Translated { endpoint: 0x1_0008 });
    let b = m.hot_add(&parse_disk("path=a,transport=pci,bridge=hpb").unwrap()).unwrap();
    assert_eq!(b.device.dma, DmaPath::Direct);
}

/// Bypass inside a translated hot-plug bridge is DMA003 at boot, and the
/// same line at run time.
#[test]
fn a_device_against_its_bridge_scope_gets_the_coded_refusal_of_run() {
    let keys = "path=a,transport=pci,bridge=hpt,direct-ram-access=on";
    let at_boot = crate::checks::refusal(&crate::checks::check(&machine(&["--disk", keys]))).unwrap();
    let err = machine(&[]).hot_add(&parse_disk(keys).unwrap()).unwrap_err();
    assert_eq!(err, HotplugError::Refused(at_boot.clone()));
    assert!(at_boot.starts_with("[DMA003]"), "{at_boot}");
    // And a translated device on the bypassed bridge: DMA001.
    let err = machine(&[])
        .hot_add(&parse_disk("path=a,transport=pci,bridge=hpb,direct-ram-access=off").unwrap())
        .unwrap_err();
    assert!(matches!(&err, HotplugError::Refused(l) if l.starts_with("[DMA001]")), "{err}");
}

#[test]
fn only_hotplug_bridges_take_devices() {
    let m = machine(&[]);
    for keys in ["path=a", "path=a,transport=pci", "path=a,transport=pci,bridge=fixed"] {
        let err = m.hot_add(&parse_disk(keys).unwrap()).unwrap_err();
        assert!(matches!(err, HotplugError::NotHotpluggable(_)), "{keys}: {err}");
    }
    let err = m.hot_add(&parse_disk("path=a,transport=pci,bridge=nope").unwrap()).unwrap_err();
    assert!(matches!(&err, HotplugError::Placement(l) if l.contains("no such PCI host bridge")), "{err}");
}

#[test]
fn names_and_slots_are_not_reused_while_taken() {
    let m = machine(&["--disk", "path=a,transport=pci,bridge=hpt,slot=1"]);
    let added = m.hot_add(&parse_disk("path=b,transport=pci,bridge=hpt").unwrap()).unwrap();
    assert_eq!(added.device.id, "disk1");
    assert_eq!(added.device.placement, Placement::Pci { segment: 1, slot: 2 });
    let err = m.hot_add(&parse_disk("path=b,transport=pci,bridge=hpt,slot=1").unwrap()).unwrap_err();
    assert!(matches!(&err, HotplugError::Placement(l) if l.contains("slot 1")), "{err}");
    let err = m.hot_add(&parse_disk("path=b,transport=pci,bridge=hpt,id=disk0").unwrap()).unwrap_err();
    assert!(matches!(&err, HotplugError::Placement(_)), "{err}");
    let rng = m.hot_add(&parse_rng("transport=pci,bridge=hpb").unwrap()).unwrap();
    assert_eq!(rng.device.id, "rng0");
}

/// The terminal feeds one console: a second is refused, and one can come
/// back once the first left.
#[test]
fn a_console_is_plugged_in_only_where_none_is() {
    let m = machine(&[]);
    let first = m.hot_add(&parse_console("transport=pci,bridge=hpt").unwrap()).unwrap();
    assert_eq!(first.device.id, "console0");
    assert_eq!(first.device.dma, DmaPath::Translated { endpoint: 0x1_0008 });
    let err = first.machine.hot_add(&parse_console("transport=pci,bridge=hpb,id=c2").unwrap()).unwrap_err();
    assert!(matches!(&err, HotplugError::Placement(l) if l.contains("has a console (console0)")), "{err}");
    let (without, _) = first.machine.hot_remove("console0").unwrap();
    let again = without.hot_add(&parse_console("transport=pci,bridge=hpb").unwrap()).unwrap();
    assert_eq!(again.device.dma, DmaPath::Direct);
    let booted = machine(&["--console", "transport=pci"]);
    let err = booted.hot_add(&parse_console("transport=pci,bridge=hpt").unwrap()).unwrap_err();
    assert!(matches!(err, HotplugError::Placement(_)), "{err}");
}

#[test]
fn removal_frees_the_slot_and_only_hotplug_devices_leave() {
    let m = machine(&[
        "--disk",
        "path=a,transport=pci,bridge=hpt",
        "--disk",
        "path=b,transport=pci,bridge=fixed",
    ]);
    let (without, gone) = m.hot_remove("disk0").unwrap();
    assert_eq!(gone.placement, Placement::Pci { segment: 1, slot: 1 });
    let again = without.hot_add(&parse_disk("path=c,transport=pci,bridge=hpt").unwrap()).unwrap();
    assert_eq!(again.device.placement, gone.placement);
    assert_eq!(again.device.dma, gone.dma);
    for (id, kind) in [("disk1", "not hot-pluggable"), ("iommu0", "IOMMU"), ("nope", "no such device")] {
        let err = m.hot_remove(id).unwrap_err();
        assert!(err.to_string().contains(kind), "{id}: {err}");
    }
}

/// Every x86_64 machine declares the controller with its power button;
/// its slots are exactly the hotplug=on bridges'.
#[test]
fn the_controller_serves_the_hotplug_bridges_and_the_power_button() {
    let c = machine(&[]).hotplug_controller();
    assert_eq!((c.segments, c.power_button), (vec![1, 2], true));
    let plain = machine_for(Arch::X86_64, &["--disk", "path=a"]).hotplug_controller();
    assert!(plain.segments.is_empty() && plain.power_button);
    // Its pin is no virtio-mmio window's.
    let m = machine_for(Arch::X86_64, &[]);
    let last = m.arch.virtio_mmio_window(crate::layout::VIRTIO_MMIO_WINDOWS - 1).unwrap();
    assert!(last.interrupt < plain.gsi);
}

/// The IOMMU learns the empty slots of translated hot-plug bridges only,
/// each with its bridge's coherency.
#[test]
fn empty_translated_slots_are_endpoints_from_boot() {
    let m = machine_for(
        Arch::X86_64,
        &[
            "--iommu",
            "--pci-bridge",
            "id=hpt,hotplug=on,coherent=off",
            "--pci-bridge",
            "id=hpb,hotplug=on,direct-ram-access=on",
            "--disk",
            "path=a,transport=pci,bridge=hpt,slot=3",
        ],
    );
    let slots = m.hotplug_endpoints();
    assert_eq!(slots.len(), 30, "slots 1-31 of segment 1 but the taken one");
    assert!(slots.iter().all(|&(e, coherent)| e >> 16 == 1 && !coherent));
    assert!(!slots.iter().any(|&(e, _)| e == 0x1_0018), "slot 3 holds a device");
}

#[test]
fn a_device_cannot_bring_another_coherency_than_its_slot() {
    let err = machine(&[])
        .hot_add(&parse_disk("path=a,transport=pci,bridge=hpt,coherent=off").unwrap())
        .unwrap_err();
    // The slot's coherency (the root's `_CCA`, the IOMMU's view of the
    // endpoint) was declared at boot: DMA002, as at boot.
    assert!(matches!(&err, HotplugError::Refused(l) if l.starts_with("[DMA002]")), "{err}");
}

#[test]
fn arm64_machines_take_no_device_at_run_time() {
    let m = machine_for(Arch::Aarch64, &["--pci-bridge", "id=hp,hotplug=on"]);
    let err = m.hot_add(&parse_disk("path=a,transport=pci,bridge=hp").unwrap()).unwrap_err();
    assert!(matches!(&err, HotplugError::NotHotpluggable(l) if l.contains("ACPI")), "{err}");
}
