//! Machines for tests, built from the same options the command line gives.

use crate::options::{
    parse_bridge, parse_console, parse_disk, parse_iommu, parse_net, parse_rng, BridgeOptions, DeviceOptions,
    IommuOptions, MachineOptions,
};
use crate::{Arch, Machine, Result};

/// RAM of the test machines: 1 GiB.
pub const TEST_MEMORY: u64 = 1 << 30;

/// An x86_64 machine of one vCPU and [`TEST_MEMORY`] with these devices.
pub fn new_machine(
    bridges: &[BridgeOptions],
    disks: &[DeviceOptions],
    rngs: &[DeviceOptions],
    console: Option<&DeviceOptions>,
    iommu: Option<&IommuOptions>,
) -> Result<Machine> {
    let options = MachineOptions {
        bridges: bridges.to_vec(),
        devices: disks.iter().chain(rngs).chain(console).cloned().collect(),
        iommu: iommu.cloned(),
        ..MachineOptions::new(1, TEST_MEMORY)
    };
    Machine::new(&options, Arch::X86_64)
}

/// The machine options of a `run` command line's machine part
/// (`--disk KEYS`, `--rng [KEYS]`, `--console [KEYS]`, `--iommu [KEYS]`,
/// `--pci-bridge KEYS`, `--cpus N`, `--memory BYTES`); an option whose
/// keys are optional may stand alone. Panics on what it cannot parse:
/// test input.
#[allow(clippy::unwrap_used, clippy::panic)]
pub fn options(args: &[&str]) -> MachineOptions {
    let mut o = MachineOptions::new(1, TEST_MEMORY);
    let mut rest = args.iter().peekable();
    while let Some(flag) = rest.next() {
        // `--rng`, `--console` and `--iommu` may stand without keys.
        let value = match rest.peek() {
            Some(v) if !v.starts_with("--") => rest.next().copied().unwrap_or_default(),
            _ => "",
        };
        match *flag {
            "--disk" => o.devices.push(parse_disk(value).unwrap()),
            "--net" => o.devices.push(parse_net(value).unwrap()),
            "--rng" => o.devices.push(parse_rng(value).unwrap()),
            "--console" => o.devices.push(parse_console(value).unwrap()),
            "--iommu" => o.iommu = Some(parse_iommu(value).unwrap()),
            "--pci-bridge" => o.bridges.push(parse_bridge(value).unwrap()),
            "--cpus" => o.cpus = value.parse().unwrap(),
            "--memory" => o.memory = crate::size::parse_size(value).unwrap(),
            other => panic!("{args:?}: unknown option {other}"),
        }
    }
    o
}

/// The machine of [`options`]`(args)` for `arch`. Panics if it cannot be
/// built: test input.
#[allow(clippy::panic)]
pub fn machine_for(arch: Arch, args: &[&str]) -> Machine {
    Machine::new(&options(args), arch).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Named machine options (as command lines): every combination of transports, IOMMU
/// placement, bridge coherency and bypass that changes what the firmware
/// declares.
pub const CONFIGURATIONS: &[(&str, &[&str])] = &[
    ("mmio-only", &["--disk", "path=a", "--disk", "path=b,coherent=off", "--rng", "--console"]),
    (
        "pci-only",
        &["--iommu", "--disk", "path=a,transport=pci", "--rng", "transport=pci,direct-ram-access=on"],
    ),
    (
        "mixed-iommu-mmio",
        &[
            "--iommu",
            "transport=mmio",
            "--disk",
            "path=a,transport=pci",
            "--disk",
            "path=b",
            "--disk",
            "path=c,coherent=off",
            "--rng",
            "direct-ram-access=on",
        ],
    ),
    (
        "mixed-iommu-pci",
        &[
            "--iommu",
            "--disk",
            "path=a",
            "--disk",
            "path=b,transport=pci",
            "--rng",
            "transport=pci,direct-ram-access=on",
            "--console",
            "coherent=off",
        ],
    ),
    (
        "two-bridges",
        &[
            "--iommu",
            "bridge=slow",
            "--pci-bridge",
            "id=slow,coherent=off",
            "--pci-bridge",
            "id=hp,hotplug=on",
            "--disk",
            "path=a,transport=pci",
            "--disk",
            "path=b,transport=pci,bridge=slow",
            "--disk",
            "path=c,transport=pci,bridge=hp",
            "--rng",
        ],
    ),
    (
        "all-bypass",
        &[
            "--iommu",
            "transport=mmio",
            "--pci-bridge",
            "id=pci0,direct-ram-access=on",
            "--pci-bridge",
            "id=slow,coherent=off,direct-ram-access=on",
            "--disk",
            "path=a,direct-ram-access=on",
            "--disk",
            "path=b,transport=pci",
            "--rng",
            "transport=pci,bridge=slow",
        ],
    ),
    (
        "network",
        &[
            "--iommu",
            "--net",
            "tap=tap0,transport=pci",
            "--net",
            "tap=tap1,mac=02:00:00:00:00:01,direct-ram-access=on",
            "--net",
            "tap=tap2,id=wan",
        ],
    ),
];
