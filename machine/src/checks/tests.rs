//! Every check fires on a minimal machine that breaks its rule and stays
//! silent on the nearest valid neighbour.

use super::*;
use crate::options::{parse_bridge, parse_console, parse_disk, parse_iommu, parse_rng};
use crate::test_utils::new_machine;
use crate::Placement;

/// A machine from command-line style `(option, keys)` pairs.
fn machine(args: &[(&str, &str)]) -> Machine {
    let (mut bridges, mut disks, mut rngs, mut console, mut iommu) = (vec![], vec![], vec![], None, None);
    for (option, keys) in args {
        match *option {
            "--pci-bridge" => bridges.push(parse_bridge(keys).unwrap()),
            "--disk" => disks.push(parse_disk(keys).unwrap()),
            "--rng" => rngs.push(parse_rng(keys).unwrap()),
            "--console" => console = Some(parse_console(keys).unwrap()),
            "--iommu" => iommu = Some(parse_iommu(keys).unwrap()),
            other => panic!("unknown option {other}"),
        }
    }
    new_machine(&bridges, &disks, &rngs, console.as_ref(), iommu.as_ref()).unwrap()
}

fn codes(findings: &[Finding]) -> Vec<Code> {
    findings.iter().map(|f| f.code).collect()
}

type Case =
    (Code, &'static [(&'static str, &'static str)], &'static [(&'static str, &'static str)], &'static str);

/// (code, a machine that breaks the rule, its nearest valid neighbour, a
/// piece of the message).
const CASES: &[Case] = &[
    (
        Code::Dma001,
        &[
            ("--pci-bridge", "id=fast,direct-ram-access=on"),
            ("--disk", "path=a,transport=pci,bridge=fast,direct-ram-access=off"),
        ],
        &[("--pci-bridge", "id=fast,direct-ram-access=on"), ("--disk", "path=a,transport=pci,bridge=fast")],
        "disk0: direct-ram-access=off is impossible on host bridge fast (direct-ram-access=on)",
    ),
    (
        Code::Dma001,
        &[
            ("--iommu", "type=vtd"),
            ("--pci-bridge", "id=fast,direct-ram-access=on"),
            ("--disk", "path=a,transport=pci,bridge=fast,direct-ram-access=off"),
            ("--rng", "transport=pci"),
        ],
        &[
            ("--iommu", "type=vtd"),
            ("--pci-bridge", "id=fast,direct-ram-access=on"),
            ("--disk", "path=a,transport=pci,bridge=fast"),
            ("--rng", "transport=pci"),
        ],
        "bridge bypasses the IOMMU as a whole and the DMAR gives no VT-d unit to its segment 1",
    ),
    (
        Code::Dma002,
        &[("--disk", "path=a,transport=pci,coherent=off")],
        &[("--disk", "path=a,transport=pci,coherent=on")],
        "disk0: coherent=off conflicts with its host bridge pci0 (coherent=on)",
    ),
    (
        Code::Dma002,
        &[("--pci-bridge", "id=slow,coherent=off"), ("--rng", "transport=pci,bridge=slow,coherent=on")],
        &[("--pci-bridge", "id=slow,coherent=off"), ("--rng", "transport=pci,bridge=slow")],
        "rng0: coherent=on conflicts with its host bridge slow (coherent=off)",
    ),
    (
        Code::Dma003,
        &[
            ("--pci-bridge", "id=hp,hotplug=on"),
            ("--disk", "path=a,transport=pci,bridge=hp,direct-ram-access=on"),
        ],
        &[
            ("--pci-bridge", "id=hp,hotplug=on,direct-ram-access=on"),
            ("--disk", "path=a,transport=pci,bridge=hp,direct-ram-access=on"),
        ],
        "disk0: direct-ram-access=on is not allowed on host bridge hp (hotplug=on, direct-ram-access=off)",
    ),
    (
        Code::Dma004,
        &[("--iommu", "direct-ram-access=off")],
        &[("--iommu", "direct-ram-access=on")],
        "iommu0: direct-ram-access=off would put the IOMMU in its own scope",
    ),
    (
        Code::Dma004,
        &[("--iommu", "transport=mmio,direct-ram-access=off")],
        &[("--iommu", "transport=mmio")],
        "iommu0: direct-ram-access=off would put the IOMMU in its own scope",
    ),
    (
        Code::Dma005,
        &[("--disk", "path=a,transport=pci,slot=3"), ("--rng", "transport=pci,slot=3")],
        &[("--disk", "path=a,transport=pci,slot=3"), ("--rng", "transport=pci,slot=4")],
        "disk0 and rng0 both sit at PCI 0000:00:03.0 (slot=3 on host bridge pci0): give each its own slot=",
    ),
    (
        Code::Dma005,
        &[
            ("--disk", "path=a,addr=0xd0001000"),
            ("--rng", "addr=0xd0001000"),
            ("--console", "addr=0xd0001000"),
        ],
        &[("--disk", "path=a,addr=0xd0001000"), ("--rng", ""), ("--console", "")],
        "disk0, rng0 and console0 all sit at virtio-mmio window 0xd0001000 (addr=0xd0001000, IOAPIC pin 6)",
    ),
    (
        Code::Dma005,
        // The IOMMU's place counts too.
        &[("--iommu", "slot=1"), ("--disk", "path=a,transport=pci,slot=1")],
        &[("--iommu", "slot=1"), ("--disk", "path=a,transport=pci")],
        "iommu0 and disk0 both sit at PCI 0000:00:01.0",
    ),
    (
        Code::Dma007,
        &[("--iommu", "type=vtd"), ("--disk", "path=a,transport=pci"), ("--rng", "")],
        &[("--iommu", "type=vtd"), ("--disk", "path=a,transport=pci"), ("--rng", "direct-ram-access=on")],
        "rng0: a translated virtio-mmio device cannot be behind VT-d",
    ),
    (
        Code::Dma101,
        &[("--disk", "path=a,coherent=off")],
        &[("--disk", "path=a,coherent=on")],
        "disk0: declared coherent=off, but dmavm accesses guest memory through cacheable mappings",
    ),
    (
        Code::Dma101,
        &[("--pci-bridge", "id=slow,coherent=off"), ("--disk", "path=a,transport=pci,bridge=slow")],
        &[("--pci-bridge", "id=slow"), ("--disk", "path=a,transport=pci,bridge=slow")],
        "host bridge slow: declared coherent=off (_CCA 0 on segment 1) for disk0, but dmavm accesses",
    ),
    (
        Code::Dma102,
        &[("--iommu", ""), ("--disk", "path=a,direct-ram-access=on"), ("--rng", "direct-ram-access=on")],
        &[("--iommu", ""), ("--disk", "path=a,direct-ram-access=on"), ("--rng", "")],
        "iommu0: no device is in its scope (disk0 and rng0 bypass it",
    ),
    (
        Code::Dma103,
        &[("--iommu", ""), ("--disk", "path=a"), ("--rng", "coherent=off")],
        &[("--iommu", "mixed-coherency=reject"), ("--disk", "path=a"), ("--rng", "coherent=off")],
        "translated devices of different coherency (disk0 coherent, rng0 non-coherent)",
    ),
    (
        Code::Dma104,
        &[
            ("--iommu", ""),
            ("--disk", "path=a,transport=pci"),
            ("--rng", "transport=pci,direct-ram-access=on"),
        ],
        &[("--iommu", ""), ("--disk", "path=a,transport=pci"), ("--rng", "transport=pci")],
        "rng0 bypasses iommu0 (direct-ram-access=on), which only the ACPI VIOT tells the guest",
    ),
    (
        Code::Dma105,
        &[("--iommu", "type=vtd"), ("--disk", "path=a,transport=pci,direct-ram-access=on")],
        &[("--iommu", "type=vtd"), ("--disk", "path=a,transport=pci")],
        "--iommu type=vtd: no PCI function is translated",
    ),
    (
        Code::Dma105,
        // A translated hot-pluggable bridge has a unit with nothing on it yet.
        &[("--iommu", "type=vtd"), ("--pci-bridge", "id=hp,hotplug=on,direct-ram-access=on")],
        &[("--iommu", "type=vtd"), ("--pci-bridge", "id=hp,hotplug=on")],
        "so the machine has no VT-d unit and no DMAR",
    ),
    (
        Code::Dma106,
        &[("--iommu", "type=vtd,coherent=off"), ("--disk", "path=a,transport=pci")],
        &[("--iommu", "type=vtd,coherent=on"), ("--disk", "path=a,transport=pci")],
        "--iommu type=vtd,coherent=off: the VT-d units declare non-coherent page walks (ECAP.C clear)",
    ),
];

/// Codes whose broken machine is not an x86_64 one, tested on their own.
const OTHER_ARCH: &[Code] = &[Code::Dma006];

#[test]
fn vtd_is_for_x86_64_only() {
    let args = ["--iommu", "type=vtd", "--disk", "path=a,transport=pci"];
    let arm = crate::test_utils::machine_for(crate::Arch::Aarch64, &args);
    let findings = check(&arm);
    assert_eq!(codes(&findings), [Code::Dma006], "{findings:#?}");
    assert!(findings[0].message.starts_with("--iommu type=vtd: Intel VT-d is an x86 IOMMU"), "{findings:?}");
    assert!(findings[0].message.contains("the aarch64 machine"), "{findings:?}");
    assert!(refusal(&findings).is_some());
    assert_eq!(check(&crate::test_utils::machine_for(crate::Arch::X86_64, &args)), []);
    let virtio =
        crate::test_utils::machine_for(crate::Arch::Aarch64, &["--iommu", "--disk", "path=a,transport=pci"]);
    assert_eq!(check(&virtio), []);
}

#[test]
fn a_vtd_machine_has_none_of_the_virtio_iommu_findings() {
    // No IOMMU device: nothing can be in its own scope, unused as a device,
    // or known from the VIOT only (the DMAR has always said who bypasses).
    let m = machine(&[
        ("--iommu", "type=vtd"),
        ("--disk", "path=a,transport=pci"),
        ("--rng", "transport=pci,direct-ram-access=on"),
        ("--console", "direct-ram-access=on,coherent=off"),
    ]);
    assert_eq!(codes(&check(&m)), [Code::Dma101]);
    // A translated virtio-mmio device alone is refused, not also "unused".
    let m = machine(&[("--iommu", "type=vtd"), ("--disk", "path=a")]);
    assert_eq!(codes(&check(&m)), [Code::Dma007]);
}

#[test]
fn every_check_fires_and_stays_silent_on_its_neighbour() {
    for (code, broken, valid, needle) in CASES {
        let findings = check_with(&machine(broken), Firmware::Acpi);
        let fired: Vec<&Finding> = findings.iter().filter(|f| f.code == *code).collect();
        assert_eq!(fired.len(), 1, "{code} on {broken:?}: {findings:#?}");
        assert_eq!(fired[0].severity, code.severity());
        assert!(fired[0].message.contains(needle), "{code}: expected {needle:?} in {}", fired[0].message);
        let quiet = check_with(&machine(valid), Firmware::Acpi);
        assert!(!codes(&quiet).contains(code), "{code} on its valid neighbour {valid:?}: {quiet:#?}");
        assert!(refusal(&quiet).is_none(), "{valid:?} must be a valid machine: {quiet:#?}");
    }
    let covered: Vec<Code> = CASES.iter().map(|c| c.0).chain(OTHER_ARCH.iter().copied()).collect();
    for code in Code::ALL {
        assert!(covered.contains(&code), "{code} has no test case");
    }
}

#[test]
fn a_plain_machine_has_no_findings() {
    assert_eq!(check(&Machine::empty(crate::Arch::X86_64, 1 << 30)), []);
    let m = machine(&[("--iommu", ""), ("--disk", "path=a,transport=pci"), ("--rng", ""), ("--console", "")]);
    assert_eq!(check(&m), []);
    // No IOMMU: bypassing devices are simply devices.
    assert_eq!(check(&machine(&[("--disk", "path=a,direct-ram-access=on")])), []);
    // An IOMMU with nothing else to translate is not "bypassed by every device".
    assert_eq!(check(&machine(&[("--iommu", "")])), []);
}

#[test]
fn old_guest_warning_is_for_acpi_only_and_not_on_top_of_an_unused_iommu() {
    let mixed = machine(&[("--iommu", ""), ("--disk", "path=a"), ("--rng", "direct-ram-access=on")]);
    assert_eq!(codes(&check_with(&mixed, Firmware::Acpi)), [Code::Dma104]);
    assert_eq!(codes(&check_with(&mixed, Firmware::DeviceTree)), []);
    // A bypassing bridge counts as bypassing devices.
    let bridge = machine(&[
        ("--iommu", ""),
        ("--pci-bridge", "id=fast,direct-ram-access=on"),
        ("--disk", "path=a,transport=pci,bridge=fast"),
        ("--rng", "transport=pci"),
    ]);
    let findings = check_with(&bridge, Firmware::Acpi);
    assert_eq!(codes(&findings), [Code::Dma104]);
    assert!(findings[0].message.starts_with("disk0 bypasses iommu0"), "{findings:?}");
    let all = machine(&[("--iommu", ""), ("--disk", "path=a,direct-ram-access=on")]);
    assert_eq!(codes(&check_with(&all, Firmware::Acpi)), [Code::Dma102]);
    // A translated hot-pluggable bridge keeps the IOMMU in use.
    let hp = machine(&[
        ("--iommu", ""),
        ("--pci-bridge", "id=hp,hotplug=on"),
        ("--disk", "path=a,direct-ram-access=on"),
    ]);
    assert_eq!(codes(&check_with(&hp, Firmware::Acpi)), [Code::Dma104]);
}

#[test]
fn errors_come_first_and_refusal_is_one_line() {
    let m = machine(&[
        ("--iommu", "direct-ram-access=off"),
        ("--disk", "path=a,coherent=off"),
        ("--rng", "transport=pci,coherent=off"),
    ]);
    let findings = check(&m);
    let severities: Vec<Severity> = findings.iter().map(|f| f.severity).collect();
    assert_eq!(severities, [Severity::Error, Severity::Error, Severity::Warning]);
    assert_eq!(codes(&findings)[..2], [Code::Dma002, Code::Dma004]);
    let line = refusal(&findings).unwrap();
    assert!(line.starts_with("[DMA002] rng0: coherent=off conflicts"), "{line}");
    assert!(
        line.ends_with("(and 1 more: `dmavm describe` with the same options lists every finding)"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    assert_eq!(refusal(&check(&machine(&[("--disk", "path=a,coherent=off")]))), None);
}

#[test]
fn explicit_places_are_kept_free_of_automatic_ones() {
    let m = machine(&[
        ("--disk", "path=a,transport=pci"),
        ("--disk", "path=b,transport=pci,slot=1"),
        ("--rng", ""),
        ("--console", "addr=0xd0000000"),
    ]);
    let places: Vec<Placement> = m.devices.iter().map(|d| d.placement).collect();
    assert_eq!(
        places,
        [
            Placement::Pci { segment: 0, slot: 2 },
            Placement::Pci { segment: 0, slot: 1 },
            Placement::Mmio { window: 1 },
            Placement::Mmio { window: 0 },
        ]
    );
    assert_eq!(check(&m), []);
}

#[test]
fn every_code_is_explained() {
    for code in Code::ALL {
        assert_eq!(Code::parse(code.as_str()), Some(code));
        assert_eq!(Code::parse(&code.as_str().to_lowercase()), Some(code));
        assert!(!code.summary().is_empty() && !code.summary().contains('\n'), "{code}");
        assert!(code.explanation().lines().count() >= 5, "{code}: explain why and what to do");
        assert!(code.explanation().contains("Fix:"), "{code}: say what to do");
        let expected = if code.as_str().starts_with("DMA0") { Severity::Error } else { Severity::Warning };
        assert_eq!(code.severity(), expected, "{code}");
    }
    assert_eq!(Code::parse("DMA999"), None);
}
