//! `dmavm boot-test --arch aarch64` against Debian's 6.12 arm64 kernel, in
//! the arm64 sandbox (one emulated arm64 host for the whole matrix) where
//! this host is not an arm64 one with KVM: every run of the default arm64
//! matrix passes every check, `coherency` included, and a run whose device
//! tree lies about a disk's coherency (dmavm run's test-only
//! --test-dt-flip-coherent) fails at `coherency`, naming the disk.

// A missing value fails the test, with the harness's output.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use dmavm_tests::{install_packages, prepare, Paths};
use serde_json::Value;

struct Outcome {
    status: Option<i32>,
    output: String,
    json: Value,
    logs: PathBuf,
}

fn outcome() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let paths = Paths::new();
        install_packages(&paths).unwrap_or_else(|e| panic!("{e:?}"));
        let art = prepare(&paths).unwrap_or_else(|e| panic!("{e:?}"));
        // The arm64 kernel, its initramfs and the L1 image.
        dmavm_tests::arm64::prepare_l1(&paths).unwrap_or_else(|e| panic!("{e:?}"));
        let guest = dmavm_tests::arm64::guest_dir(&paths);
        let out = paths.testbed().join("boot-test-arm64");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let t0 = Instant::now();
        let result = Command::new(&art.dmavm)
            .args(["boot-test", "--arch", "aarch64", "--kernel"])
            .arg(guest.join("Image"))
            .arg("--initrd")
            .arg(guest.join("initramfs.cpio.gz"))
            .arg("--matrix")
            .arg(paths.resources().join("matrix/arm64.toml"))
            .arg("--matrix")
            .arg(paths.root.join("tests/matrix/arm64-broken.toml"))
            .arg("--json")
            .arg(out.join("report.json"))
            .arg("--kcidb")
            .arg(out.join("kcidb.json"))
            .arg("--logs")
            .arg(out.join("logs"))
            .current_dir(&paths.root)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", art.dmavm.display()));
        let output =
            format!("{}{}", String::from_utf8_lossy(&result.stderr), String::from_utf8_lossy(&result.stdout));
        println!("dmavm boot-test --arch aarch64 took {:.1}s:\n{output}", t0.elapsed().as_secs_f64());
        let json = std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        Outcome { status: result.status.code(), output, json, logs: out.join("logs") }
    })
}

fn run<'a>(o: &'a Outcome, name: &str) -> &'a Value {
    o.json["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no run {name}:\n{}", o.output))
}

#[test]
fn the_default_arm64_matrix_passes_with_its_coherency_check() {
    let o = outcome();
    for name in ["no-iommu", "iommu-mmio", "iommu-pci", "noncoherent-mmio", "bypass", "bridges"] {
        let r = run(o, name);
        assert_eq!(r["outcome"], "passed", "{name}: {r:#}\n{}", o.output);
        let checks: Vec<&str> =
            r["checks"].as_array().map_or(vec![], |c| c.iter().filter_map(|c| c["name"].as_str()).collect());
        assert_eq!(checks[6], "coherency", "{name}: {checks:?}");
    }
    // The non-coherent disk got cache maintenance, the coherent one none:
    // both disks were measured.
    let nc = &run(o, "noncoherent-mmio")["checks"][6]["detail"];
    assert_eq!(nc, "2 disk(s): cache maintenance exactly for the non-coherent ones");
    assert_eq!(run(o, "bypass")["checks"][3]["detail"], "1 translated in groups, 2 outside");
}

#[test]
fn a_device_tree_that_lies_about_coherency_fails_at_the_coherency_check() {
    let o = outcome();
    assert_eq!(o.status, Some(1), "{}", o.output);
    let r = run(o, "dt-lies-coherent");
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(r["first_failure"]["name"], "coherency", "{r:#}");
    let detail = r["first_failure"]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("liar (virtio-mmio 0x"), "{detail}");
    assert!(detail.contains("is not coherent, but the guest treats it as coherent"), "{detail}");
    let script = std::fs::read_to_string(o.logs.join("reproduce-dt-lies-coherent.sh")).unwrap_or_default();
    assert!(script.contains("'--test-dt-flip-coherent' \\\n  'liar'"), "{script}");
}

#[test]
fn the_arm64_report_says_so() {
    let o = outcome();
    assert_eq!(o.json["arch"], "aarch64");
    assert_eq!(o.json["mode"], "arm64-sandbox");
    let kcidb: Value = std::fs::read_to_string(o.logs.join("../kcidb.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    assert_eq!(kcidb["builds"][0]["architecture"], "arm64");
    let tests = kcidb["tests"].as_array().cloned().unwrap_or_default();
    let liar = tests.iter().find(|t| t["path"] == "dmavm.dt-lies-coherent.coherency");
    assert_eq!(liar.map(|t| t["status"].clone()), Some(Value::from("FAIL")));
}
