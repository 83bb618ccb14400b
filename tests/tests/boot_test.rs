//! `dmavm boot-test` against the Debian 6.12 guest kernel, the way a user
//! runs it (a bzImage and its modules, nothing else): the default matrix
//! passes, and the runs of tests/matrix/broken.toml fail at their known
//! first check (a panic before init, a hang killed at its timeout, the
//! virtio-iommu driver withheld); of tests/matrix/net.toml, a translated
//! and a bypassing virtio-net-pci device pass the `net` check and a peer
//! that corrupts the block fails it. One harness run, so one emulated host
//! where there is no hardware KVM; its JSON and JUnit reports are read
//! back and must agree, its KCIDB submission must pass KCIDB's published
//! schema, and every failed run leaves a reproduce script.
//!
//! Besides: the default matrix in three shards (three more harness runs),
//! merged, must be the unsharded run's default runs with their verdicts
//! (exit status 0 each); and the kernel without its modules, whose
//! virtio drivers are modules, cannot be tested (exit status 125) and
//! gets one hint naming --modules.

// A missing value fails the test, with the harness's output.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use dmavm_tests::{install_packages, prepare, Paths};
use serde_json::Value;

/// What the one harness run left.
struct Outcome {
    status: Option<i32>,
    output: String,
    json: Value,
    junit: String,
    logs: PathBuf,
}

fn outcome() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let paths = Paths::new();
        install_packages(&paths).unwrap_or_else(|e| panic!("{e:?}"));
        let art = prepare(&paths).unwrap_or_else(|e| panic!("{e:?}"));
        // Replaced by every run: the reports and logs of the last one.
        let out = paths.testbed().join("boot-test");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let t0 = Instant::now();
        let result = Command::new(&art.dmavm)
            .arg("boot-test")
            .arg("--kernel")
            .arg(art.guest.join("vmlinuz"))
            .arg("--modules")
            .arg(art.guest.join("modules"))
            .arg("--matrix")
            .arg(paths.resources().join("matrix/default.toml"))
            .arg("--matrix")
            .arg(paths.root.join("tests/matrix/broken.toml"))
            .arg("--matrix")
            .arg(paths.root.join("tests/matrix/net.toml"))
            .args(["--jobs", "2", "--timeout", "120s"])
            .arg("--json")
            .arg(out.join("report.json"))
            .arg("--junit")
            .arg(out.join("report.xml"))
            .arg("--logs")
            .arg(out.join("logs"))
            .arg("--kcidb")
            .arg(out.join("kcidb.json"))
            .current_dir(&paths.root)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", art.dmavm.display()));
        let output =
            format!("{}{}", String::from_utf8_lossy(&result.stderr), String::from_utf8_lossy(&result.stdout));
        println!("dmavm boot-test took {:.1}s:\n{output}", t0.elapsed().as_secs_f64());
        let json = std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let junit = std::fs::read_to_string(out.join("report.xml")).unwrap_or_default();
        Outcome { status: result.status.code(), output, json, junit, logs: out.join("logs") }
    })
}

fn runs(o: &Outcome) -> &Vec<Value> {
    match o.json["runs"].as_array() {
        Some(r) => r,
        None => panic!("no runs in the JSON report:\n{}", o.output),
    }
}

fn run<'a>(o: &'a Outcome, name: &str) -> &'a Value {
    runs(o).iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no run {name}:\n{}", o.output))
}

const DEFAULT_RUNS: &[&str] = &[
    "no-iommu",
    "translated-pci/lazy",
    "translated-pci/strict",
    "translated-pci/passthrough",
    "translated-mmio/lazy",
    "mixed/lazy",
    "mixed/strict",
    "bridges/lazy",
    "vtd/strict",
    "vtd-bridges/lazy",
];

/// The checks of an x86 run, in order: these, `net` for a machine with
/// network devices, then [`AFTER_NET`].
const BEFORE_NET: &[&str] = &["boot", "finished", "devices", "iommu-groups", "access-platform", "dma"];
const AFTER_NET: &[&str] = &["kernel-log", "vmm-stats"];

/// The names of run `r`'s checks, in order.
fn check_names(r: &Value) -> Vec<&str> {
    r["checks"].as_array().map_or(vec![], |c| c.iter().filter_map(|c| c["name"].as_str()).collect())
}

#[test]
fn the_default_matrix_passes() {
    let o = outcome();
    for name in DEFAULT_RUNS {
        let r = run(o, name);
        assert_eq!(r["outcome"], "passed", "{name}: {r:#}\n{}", o.output);
        assert_eq!(check_names(r), [BEFORE_NET, AFTER_NET].concat(), "{name}");
    }
    // The translated machines really had devices in IOMMU groups, the
    // plain one none.
    assert_eq!(run(o, "no-iommu")["checks"][3]["detail"], "0 translated in groups, 4 outside");
    assert_eq!(run(o, "mixed/strict")["checks"][3]["detail"], "2 translated in groups, 3 outside");
    assert_eq!(run(o, "bridges/lazy")["checks"][3]["detail"], "2 translated in groups, 2 outside");
    // The VT-d machines: the guest registered each unit and read the DMAR
    // the model declares (rand and rng0 in the scope, the bypassing disk
    // not; on vtd-bridges only the translated bridge's segment 2).
    assert_eq!(
        run(o, "vtd/strict")["checks"][3]["detail"],
        "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0000[00:01.0,00:03.0]"
    );
    assert_eq!(
        run(o, "vtd-bridges/lazy")["checks"][3]["detail"],
        "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0002[00:01.0,00:02.0]"
    );
}

#[test]
fn broken_runs_fail_at_their_first_check() {
    let o = outcome();
    assert_eq!(o.status, Some(1), "some runs failed, so the status is 1:\n{}", o.output);
    for (name, outcome, check, needle) in [
        ("panic-before-init", "failed", "boot", "Kernel panic - not syncing"),
        ("hang", "timeout", "boot", "killed at its 40s timeout"),
        ("no-iommu-driver", "failed", "devices", "iommu0 (virtio-iommu at 0000:00:01.0"),
    ] {
        let r = run(o, name);
        assert_eq!(r["outcome"], outcome, "{name}: {r:#}");
        assert_eq!(r["first_failure"]["name"], check, "{name}: {r:#}");
        let detail = r["first_failure"]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{name}: {detail}");
    }
    let hang = run(o, "hang")["secs"].as_f64().unwrap_or(0.0);
    assert!((40.0..70.0).contains(&hang), "the hung guest is killed at its timeout: {hang}s");
    // The final table names each run's first failing check.
    assert!(o.output.contains("hang "), "{}", o.output);
    assert!(o.output.contains("11 of 15 runs passed, 4 failed"), "{}", o.output);
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {r:#}"))
}

#[test]
fn both_links_pass_the_net_check() {
    let o = outcome();
    let r = run(o, "net-pci");
    assert_eq!(r["outcome"], "passed", "{r:#}\n{}", o.output);
    assert_eq!(check_names(r), [BEFORE_NET, &["net"], AFTER_NET].concat());
    // The translated device really was translated, the other not.
    assert_eq!(check(r, "iommu-groups")["detail"], "1 translated in groups, 2 outside");
    let net = check(r, "net")["detail"].as_str().unwrap_or_default();
    assert!(
        net.starts_with(
            "2 link(s) up, ping answered, 2048 KiB down and back up with matching SHA-256 (up (eth"
        ),
        "{net}"
    );
    assert!(net.contains("; direct (eth"), "{net}");
    let log = std::fs::read_to_string(o.logs.join("net-pci.log")).unwrap_or_default();
    // Every link was exchanged on, each on its own subnet.
    assert!(
        log.contains("host=169.254.10.1 iface=eth") && log.contains("host=169.254.11.1 iface=eth"),
        "{log}"
    );
}

#[test]
fn a_corrupted_block_fails_the_net_check() {
    let o = outcome();
    let r = run(o, "net-corrupt");
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(r["first_failure"]["name"], "net", "{r:#}");
    let detail = r["first_failure"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("checksum mismatch on the download: the guest received 2097152 bytes"),
        "{detail}"
    );
    assert!(detail.contains("checksum mismatch on the upload"), "{detail}");
    // Everything else about the link held: it is the block that failed.
    assert!(!detail.contains("ping") && !detail.contains("link down"), "{detail}");
    assert_eq!(o.status, Some(1), "a failed run makes the status 1:\n{}", o.output);
}

#[test]
fn junit_parses_and_agrees_with_the_json() {
    let o = outcome();
    let doc = roxmltree::Document::parse(&o.junit).unwrap_or_else(|e| panic!("JUnit XML: {e}\n{}", o.junit));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let attr = |n: roxmltree::Node<'_, '_>, a: &str| n.attribute(a).and_then(|v| v.parse::<usize>().ok());
    let json = |k: &str| o.json[k].as_u64().map(|v| v as usize);
    assert_eq!(attr(root, "tests"), json("total"));
    assert_eq!(attr(root, "tests"), Some(15));
    assert_eq!(attr(root, "failures").zip(attr(root, "errors")).map(|(f, e)| f + e), json("failed"));
    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    let names: Vec<&str> = suites.iter().filter_map(|s| s.attribute("name")).collect();
    assert_eq!(names, ["default", "broken", "net"]);
    for s in &suites {
        let cases: Vec<_> = s.children().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(attr(*s, "tests"), Some(cases.len()));
        let failing = cases.iter().filter(|c| c.children().any(|n| n.has_tag_name("failure"))).count();
        assert_eq!(attr(*s, "failures"), Some(failing));
        for c in &cases {
            assert!(c.attribute("classname").is_some() && c.attribute("name").is_some());
            assert!(c.attribute("time").and_then(|t| t.parse::<f64>().ok()).is_some());
        }
    }
    let timeout =
        doc.descendants().find(|n| n.has_tag_name("failure") && n.attribute("type") == Some("timeout"));
    assert!(timeout.is_some(), "the hang is a timeout failure");
    let devices =
        doc.descendants().find(|n| n.has_tag_name("failure") && n.attribute("type") == Some("devices"));
    assert!(devices.is_some(), "no-iommu-driver fails at devices");
}

#[test]
fn every_run_keeps_its_log() {
    let o = outcome();
    for r in runs(o) {
        let log = PathBuf::from(r["log"].as_str().unwrap_or_default());
        assert!(log.starts_with(&o.logs), "{log:?}");
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        if r["outcome"] == "passed" {
            assert!(text.contains("DMAVM bt_done=1"), "{}", log.display());
        }
    }
    assert!(o.output.contains("boot-test: [15/15, 4 failed]"), "{}", o.output);
}

/// Checks a KCIDB submission with kcidb-io's validator
/// (resources/tools/install-kcidb.sh); a missing venv fails.
fn kcidb_valid(file: &std::path::Path) {
    let paths = Paths::new();
    let python = paths.root.join("build/tools/kcidb/bin/python3");
    assert!(python.exists(), "{}: run resources/tools/install-kcidb.sh", python.display());
    let out = Command::new(&python)
        .arg("-c")
        .arg("import json, sys, kcidb_io\nkcidb_io.schema.V5_3.validate_exactly(json.load(open(sys.argv[1])))\n")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kcidb_output_passes_the_schema_with_failures_and_a_timeout() {
    let o = outcome();
    let file = o.logs.parent().map(|p| p.join("kcidb.json")).unwrap_or_default();
    kcidb_valid(&file);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default()).unwrap_or(Value::Null);
    let tests = v["tests"].as_array().cloned().unwrap_or_default();
    let status = |p: &str| tests.iter().find(|t| t["path"] == p).map(|t| t["status"].clone());
    assert_eq!(status("dmavm.mixed.strict.dma"), Some(Value::from("PASS")));
    assert_eq!(status("dmavm.hang"), Some(Value::from("FAIL")));
    assert_eq!(status("dmavm.no-iommu-driver.devices"), Some(Value::from("FAIL")));
    assert_eq!(status("dmavm.panic-before-init.finished"), Some(Value::from("MISS")));
    // The net check is a test of the runs with network devices only.
    assert_eq!(status("dmavm.net-pci.net"), Some(Value::from("PASS")));
    assert_eq!(status("dmavm.net-corrupt.net"), Some(Value::from("FAIL")));
    assert_eq!(status("dmavm.net-corrupt.kernel-log"), Some(Value::from("PASS")));
    assert_eq!(status("dmavm.mixed.strict.net"), None);
    assert!(tests.iter().all(|t| t["log_url"].as_str().is_some_and(|u| u.starts_with("file:///"))));
}

#[test]
fn every_failed_run_has_a_reproduce_script() {
    let o = outcome();
    for r in runs(o) {
        let name = r["name"].as_str().unwrap_or_default().replace('/', "_");
        let script = o.logs.join(format!("reproduce-{name}.sh"));
        if r["outcome"] == "passed" {
            assert!(!script.exists(), "{}", script.display());
            continue;
        }
        let text = std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let cmdline = r["cmdline"].as_str().unwrap_or_default();
        assert!(text.contains(&format!("'--cmdline' \\\n  '{cmdline}'")), "{text}");
        assert!(text.contains("\"$dmavm\" run --kernel") && text.contains("\"$here\"/initrd.img"), "{text}");
        let syntax = Command::new("sh").arg("-n").arg(&script).status().map(|s| s.success());
        assert_eq!(syntax.ok(), Some(true), "{}", script.display());
    }
    assert!(o.logs.join("initrd.img").is_file());
}

/// One more harness run of the default matrix, as `extra` says; its
/// status, output and JSON report.
fn harness(extra: &[&str], json: &std::path::Path, modules: bool) -> (Option<i32>, String, Value) {
    let paths = Paths::new();
    let art = prepare(&paths).unwrap_or_else(|e| panic!("{e:?}"));
    let mut cmd = Command::new(&art.dmavm);
    cmd.arg("boot-test").arg("--kernel").arg(art.guest.join("vmlinuz"));
    if modules {
        cmd.arg("--modules").arg(art.guest.join("modules"));
    }
    let result = cmd
        .arg("--matrix")
        .arg(paths.resources().join("matrix/default.toml"))
        .args(["--timeout", "120s", "--json"])
        .arg(json)
        .args(extra)
        .current_dir(&paths.root)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", art.dmavm.display()));
    let output =
        format!("{}{}", String::from_utf8_lossy(&result.stderr), String::from_utf8_lossy(&result.stdout));
    println!("dmavm boot-test {extra:?}:\n{output}");
    let report =
        std::fs::read_to_string(json).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    (result.status.code(), output, report)
}

#[test]
fn three_shards_merged_are_the_unsharded_run() {
    let o = outcome();
    let paths = Paths::new();
    let dir = paths.testbed().join("boot-test-shards");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut shards = Vec::new();
    for i in 1..=3 {
        let json = dir.join(format!("shard{i}.json"));
        let shard = format!("{i}/3");
        let (status, output, report) = harness(&["--shard", &shard], &json, true);
        assert_eq!(status, Some(0), "shard {shard} of the default matrix passes:\n{output}");
        assert_eq!(report["matrix_total"], DEFAULT_RUNS.len(), "{output}");
        shards.push(json);
    }
    let art = prepare(&paths).unwrap_or_else(|e| panic!("{e:?}"));
    let merged = dir.join("merged.json");
    let kcidb = dir.join("kcidb.json");
    let out = Command::new(&art.dmavm)
        .args(["boot-test", "merge", "--json"])
        .arg(&merged)
        .arg("--kcidb")
        .arg(&kcidb)
        .args(shards.iter().rev())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    kcidb_valid(&kcidb);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap_or_default()).unwrap_or(Value::Null);
    let verdicts = |runs: Vec<&Value>| -> Vec<(String, String)> {
        runs.iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("?").to_string(),
                    r["outcome"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    };
    let unsharded: Vec<&Value> =
        runs(o).iter().filter(|r| DEFAULT_RUNS.contains(&r["name"].as_str().unwrap_or(""))).collect();
    let merged_runs: Vec<&Value> = m["runs"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    assert_eq!(verdicts(merged_runs), verdicts(unsharded));
    let all = Some(DEFAULT_RUNS.len() as u64);
    assert_eq!((m["total"].as_u64(), m["passed"].as_u64()), (all, all));
}

#[test]
fn a_kernel_without_its_modules_cannot_be_tested_and_is_told_why() {
    let paths = Paths::new();
    let dir = paths.testbed().join("boot-test-no-modules");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let json = dir.join("report.json");
    let kcidb = dir.join("kcidb.json");
    let (status, output, report) = harness(
        &["--only", "translated-mmio", "--only", "no-iommu", "--kcidb", kcidb.to_str().unwrap_or_default()],
        &json,
        false,
    );
    assert_eq!(status, Some(125), "{output}");
    assert_eq!(output.matches("--modules").count(), 1, "one hint:\n{output}");
    assert!(output.contains("boot-test: hint: the guest's kernel has no "), "{output}");
    for r in report["runs"].as_array().cloned().unwrap_or_default() {
        assert_eq!(r["first_failure"]["name"], "devices", "{r:#}");
        assert!(
            r["missing_drivers"].as_array().is_some_and(|d| d.iter().any(|d| d == "virtio_blk")),
            "{r:#}"
        );
    }
    kcidb_valid(&kcidb);
}
