//! The device trees the arm64 guest tests boot with (the device options of
//! tests/scenarios/arm64-*.sh), written by `dmavm describe --arch aarch64
//! --dtb` (the same `Machine::dt` the aarch64 `run` hands the guest),
//! checked by `dtc` 1.6 (Debian 12's) and 1.8 (resources/tools/install-dtc.sh)
//! (no warnings from either) and by dtschema's `dt-validate` against
//! Linux 6.12's bindings (no output at all: dt-validate exits 0 even when it
//! reports a problem). resources/setup.sh installs both; a missing tool
//! fails the test, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// The arm64 scenarios' devices (disk paths need not exist for describe).
const BOOTED: &[(&str, &str)] = &[
    (
        "arm64-virtio-mmio",
        "--cpus 1 --iommu transport=mmio --disk path=r.img,id=rand --disk path=s.img,id=scratch \
         --disk path=ro.img,id=ro,readonly=on,direct-ram-access=on --rng",
    ),
    (
        "arm64-virtio-pci",
        "--cpus 2 --iommu transport=pci --disk path=r.img,id=rand,transport=pci \
         --disk path=s.img,id=scratch,transport=mmio \
         --disk path=ro.img,id=ro,readonly=on,transport=pci,direct-ram-access=on --rng transport=pci",
    ),
    (
        "arm64-coherency-off",
        "--cpus 1 --iommu transport=mmio --disk path=r.img,id=rand,coherent=off \
         --disk path=ro.img,id=ro,readonly=on,direct-ram-access=on",
    ),
    ("arm64-coherency-direct-off", "--cpus 1 --disk path=r.img,id=rand,coherent=off"),
    ("arm64-linux-2cpu", "--cpus 2"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tool(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: run resources/setup.sh ({what})", path.display());
    path
}

fn dtbs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dt-booted");
    std::fs::create_dir_all(&dir).unwrap();
    BOOTED
        .iter()
        .map(|(name, args)| {
            let dtb = dir.join(format!("{name}.dtb"));
            let out = Command::new(DMAVM)
                .args(["describe", "--arch", "aarch64", "--memory", "256M", "--dtb"])
                .arg(&dtb)
                .args(args.split_whitespace())
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            dtb
        })
        .collect()
}

#[test]
fn booted_trees_compile_back_with_dtc_without_warnings() {
    let dtcs = [
        ("1.6", tool(PathBuf::from("/usr/bin/dtc"), "device-tree-compiler")),
        ("1.8", tool(root().join("build/tools/bin/dtc-1.8"), "resources/tools/install-dtc.sh")),
    ];
    let dtbs = dtbs();
    for (version, dtc) in &dtcs {
        let out = Command::new(dtc).arg("--version").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("DTC {version}.")), "{} is not dtc {version}: {said}", dtc.display());
        for dtb in &dtbs {
            let out = Command::new(dtc)
                .args(["-I", "dtb", "-O", "dts", "-o", "/dev/null"])
                .arg(dtb)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "dtc {version}: {}: {stderr}",
                dtb.display()
            );
        }
    }
}

#[test]
fn booted_trees_validate_against_linux_6_12_bindings() {
    let tools = root().join("build/tools");
    let validate = tool(tools.join("dtschema/bin/dt-validate"), "resources/tools/install-dtschema.sh");
    let schema =
        tool(tools.join("linux-6.12-bindings/processed-schema.json"), "resources/tools/install-dtschema.sh");
    let out = Command::new(&validate).arg("-m").arg("-s").arg(&schema).args(dtbs()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "dt-validate: {text}");
}
