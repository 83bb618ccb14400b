//! The machines the firmware agreement tests build, from command lines
//! in the command line's words (same options, same model).

use crate::Machine;

/// Named machine options: every combination of transports, IOMMU
/// placement, bridge coherency and bypass that changes what the firmware
/// declares.
pub const CONFIGURATIONS: &[(&str, &[&str])] = &[
    ("mmio-only", &["--disk", "path=a", "--disk", "path=b,coherent=off", "--rng", "--console"]),
    (
        "pci-only",
        &["--iommu", "--disk", "path=a,transport=pci", "--rng", "transport=pci,direct-ram-access=on"],
    ),
    (
        "mixed, IOMMU on mmio",
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
        "mixed, IOMMU on pci",
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
        "two bridges, different coherency",
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
        "all bypass",
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
];

/// The x86_64 machine of `args`, through the same function `run` uses.
pub fn machine(args: &[&str]) -> Machine {
    crate::test_utils::machine_for(crate::Arch::X86_64, args)
}
