//! `dmavm boot-test` against Debian 12's own default kernel, the generic
//! 6.1 (`linux-image-6.1.0-N-amd64`, fetched by
//! `resources/guest/fetch-kernel.sh --debian12-generic`), the way a user
//! runs it: its bzImage and its module tree. That kernel has no
//! virtio-iommu driver, so Intel VT-d is the IOMMU it can drive, and its
//! virtio core, virtio-pci transport and virtio drivers are modules the
//! harness packs and loads. Every run of tests/matrix/debian12-vtd.toml
//! (translated and bypassing devices under VT-d, strict and passthrough,
//! and a bypassing bridge beside a translated one) must pass every check:
//! devices where the model puts them with their drivers, translated ones in
//! iommu groups with ACCESS_PLATFORM, the DMAR the guest read as the model
//! declares it, disks and RNG correct, no DMAR fault or invalidation error.

// A missing value fails the test, with the harness's output.
#![allow(clippy::panic)]

use std::process::Command;
use std::time::Instant;

use dmavm_tests::{install_packages, prepare, Paths};
use serde_json::Value;

#[test]
fn debian12_generic_kernel_passes_the_vtd_machines() {
    let paths = Paths::new();
    install_packages(&paths).unwrap_or_else(|e| panic!("{e:?}"));
    let art = prepare(&paths).unwrap_or_else(|e| panic!("{e:?}"));
    let fetch = Command::new("bash")
        .arg(paths.resources().join("guest/fetch-kernel.sh"))
        .arg("--debian12-generic")
        .current_dir(&paths.root)
        .status()
        .unwrap_or_else(|e| panic!("fetch-kernel.sh: {e}"));
    assert!(fetch.success(), "resources/guest/fetch-kernel.sh --debian12-generic failed");
    let kernel = paths.build().join("guest-debian12");
    let out = paths.testbed().join("boot-test-debian12");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let t0 = Instant::now();
    let result = Command::new(&art.dmavm)
        .arg("boot-test")
        .arg("--kernel")
        .arg(kernel.join("vmlinuz"))
        .arg("--modules")
        .arg(kernel.join("modules"))
        .arg("--matrix")
        .arg(paths.root.join("tests/matrix/debian12-vtd.toml"))
        .args(["--jobs", "2", "--timeout", "120s", "--json"])
        .arg(out.join("report.json"))
        .arg("--logs")
        .arg(out.join("logs"))
        .current_dir(&paths.root)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", art.dmavm.display()));
    let output =
        format!("{}{}", String::from_utf8_lossy(&result.stderr), String::from_utf8_lossy(&result.stdout));
    println!("dmavm boot-test took {:.1}s:\n{output}", t0.elapsed().as_secs_f64());
    assert_eq!(result.status.code(), Some(0), "every run passes:\n{output}");
    let report: Value = std::fs::read_to_string(out.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let runs = report["runs"].as_array().unwrap_or_else(|| panic!("no runs in the JSON report:\n{output}"));
    let kver = std::fs::read_to_string(kernel.join("kver")).unwrap_or_default();
    let expected = [
        ("vtd/strict", "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0000[00:01.0,00:03.0]"),
        ("vtd/passthrough", "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0000[00:01.0,00:03.0]"),
        ("vtd-bridges/lazy", "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0002[00:01.0,00:02.0]"),
    ];
    assert_eq!(runs.len(), expected.len(), "{output}");
    for (name, groups) in expected {
        let r = runs.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no run {name}:\n{output}"));
        assert_eq!(r["outcome"], "passed", "{name}: {r:#}");
        let check = |n: &str| {
            r["checks"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == n))
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(check("boot")["detail"], format!("init reached, kernel {}", kver.trim()), "{name}: {r:#}");
        assert_eq!(check("iommu-groups")["detail"], groups, "{name}: {r:#}");
    }
}
