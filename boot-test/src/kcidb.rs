//! `--kcidb FILE`: the results as a submission to KCIDB, KernelCI's common
//! database of kernel test results (the schema of the `kcidb-io` Python
//! package, version 5.3). The kernel under test is one checkout and one
//! build of origin `dmavm`, identified by the kernel file's SHA-256 (the
//! harness knows no commit); every run is a test at
//! `dmavm.MACHINE.VARIANT` (`dmavm.MACHINE` without a variant) and each
//! of its checks one below it, `dmavm.MACHINE.VARIANT.CHECK`.
//!
//! Statuses: a check that held is PASS, one that failed FAIL (a run killed
//! at its timeout fails the check it stopped at: the kernel hung), one
//! not judged after an earlier `boot` or `finished` failure MISS; a run
//! the harness could not start is ERROR, with its checks MISS. A run's
//! own status is its first failing check's, or PASS.

use serde_json::{json, Map, Value};

use super::report::{Report, RunResult};
use super::verdict::{checks_of, Outcome};

/// The `origin` of everything dmavm submits (KCIDB: `[a-z0-9_]+`).
pub const ORIGIN: &str = "dmavm";
/// The schema version written: `kcidb_io.schema.LATEST` of kcidb-io 141.
pub const SCHEMA: (u32, u32) = (5, 3);

/// KCIDB's tree paths take `[a-zA-Z0-9_-]` between the dots; matrix
/// names are already that (matrix.rs), checks too.
fn path_part(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// A `file://` URL of an absolute path, bytes outside RFC 3986's
/// unreserved set and '/' percent-encoded.
pub fn file_url(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut url = String::from("file://");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    Some(url)
}

/// The run's path below `dmavm`.
fn run_path(r: &RunResult) -> String {
    let mut p = format!("{ORIGIN}.{}", path_part(&r.machine));
    if let Some(v) = &r.variant {
        p.push('.');
        p.push_str(&path_part(v));
    }
    p
}

fn status(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The submission of `report`.
pub fn submission(report: &Report) -> Value {
    let sha = if report.kernel_sha256.is_empty() { "unknown" } else { report.kernel_sha256.as_str() };
    let checkout_id = format!("{ORIGIN}:kernel-{sha}");
    let build_id = format!("{ORIGIN}:kernel-{sha}-{}", report.arch);
    // Unique per harness run: the kernel, and when the harness started.
    let stamp: String = report.started.chars().filter(char::is_ascii_digit).collect();
    let id_base = format!("{ORIGIN}:{}-{stamp}", &sha[..sha.len().min(16)]);
    let architecture = match report.arch.as_str() {
        "aarch64" => "arm64",
        a => a,
    };
    let kernel_misc = json!({ "kernel": report.kernel, "kernel_sha256": report.kernel_sha256 });
    let checkout = json!({
        "id": checkout_id,
        "origin": ORIGIN,
        "comment": format!("the kernel {} as dmavm boot-test was given it", report.kernel),
        "misc": kernel_misc,
    });
    let build = json!({
        "id": build_id,
        "checkout_id": checkout_id,
        "origin": ORIGIN,
        "architecture": architecture,
        "comment": format!("{} (not built by dmavm)", report.kernel),
        "misc": kernel_misc,
    });
    let mut tests = Vec::new();
    for r in &report.runs {
        let path = run_path(r);
        let environment = json!({
            "comment": format!("dmavm {} machine {} ({} mode)", report.arch, r.machine, report.mode),
            "misc": { "matrix": r.matrix, "cmdline": r.cmdline },
        });
        let log_url = r.log.as_deref().and_then(file_url);
        let mut node = |path: String, status: &str, comment: &str, duration: Option<f64>| {
            let mut t = Map::new();
            t.insert("id".into(), json!(format!("{id_base}.{path}")));
            t.insert("build_id".into(), json!(build_id));
            t.insert("origin".into(), json!(ORIGIN));
            t.insert("path".into(), json!(path));
            t.insert("status".into(), json!(status));
            t.insert("environment".into(), environment.clone());
            if !comment.is_empty() {
                t.insert("comment".into(), json!(comment));
            }
            if !report.started.is_empty() {
                t.insert("start_time".into(), json!(report.started));
            }
            if let Some(d) = duration {
                t.insert("duration".into(), json!(d));
            }
            if let Some(u) = &log_url {
                t.insert("log_url".into(), json!(u));
            }
            tests.push(Value::Object(t));
        };
        let (run_status, run_comment) = match (&r.outcome, &r.first_failure) {
            (Outcome::Passed, _) => ("PASS", String::new()),
            (Outcome::Error, c) => ("ERROR", c.as_ref().map_or(String::new(), |c| c.detail.clone())),
            (_, c) => ("FAIL", c.as_ref().map_or(String::new(), |c| format!("{}: {}", c.name, c.detail))),
        };
        node(path.clone(), run_status, &run_comment, Some(r.secs));
        let all = checks_of(&report.arch, r.net);
        for name in &all {
            match r.checks.iter().find(|c| c.name == *name) {
                Some(c) => node(format!("{path}.{name}"), status(c.passed), &c.detail, None),
                None => node(format!("{path}.{name}"), "MISS", "not judged: an earlier check failed", None),
            }
        }
        // What the harness itself could not do, as the run's own check.
        for c in r.checks.iter().filter(|c| !all.contains(&c.name.as_str())) {
            node(format!("{path}.{}", path_part(&c.name)), "ERROR", &c.detail, None);
        }
    }
    json!({
        "version": { "major": SCHEMA.0, "minor": SCHEMA.1 },
        "checkouts": [checkout],
        "builds": [build],
        "tests": tests,
    })
}

/// The submission as the text of `--kcidb`.
pub fn text(report: &Report) -> String {
    serde_json::to_string_pretty(&submission(report)).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    #[test]
    fn statuses_paths_and_ids() {
        let s = submission(&report());
        assert_eq!(s["version"], json!({"major": 5, "minor": 3}));
        let id = format!("dmavm:kernel-{}", "ab".repeat(32));
        assert_eq!(s["checkouts"][0]["id"], json!(id));
        assert_eq!(s["builds"][0]["checkout_id"], json!(id));
        assert_eq!(s["builds"][0]["architecture"], "x86_64");
        let tests = s["tests"].as_array().unwrap();
        // Four runs, each with its node and the eight checks; the run the
        // harness could not start has its `harness` check besides.
        assert_eq!(tests.len(), 4 * 9 + 1);
        let find = |p: &str| tests.iter().find(|t| t["path"] == p).unwrap_or_else(|| panic!("{p}"));
        assert_eq!(find("dmavm.pci.strict")["status"], "PASS");
        assert_eq!(find("dmavm.pci.lazy")["status"], "FAIL");
        assert_eq!(find("dmavm.pci.lazy.devices")["status"], "FAIL");
        assert_eq!(find("dmavm.pci.lazy.boot")["status"], "MISS");
        assert_eq!(find("dmavm.hang")["status"], "FAIL");
        assert_eq!(find("dmavm.hang.boot")["status"], "FAIL");
        assert_eq!(find("dmavm.odd")["status"], "ERROR");
        assert_eq!(find("dmavm.odd.harness")["status"], "ERROR");
        assert_eq!(find("dmavm.odd.dma")["status"], "MISS");
        assert_eq!(
            find("dmavm.pci.strict")["id"],
            json!(format!("dmavm:{}-20261206040000.dmavm.pci.strict", "ab".repeat(8)))
        );
        assert_eq!(find("dmavm.pci.strict")["duration"], 1.5);
        // Relative log paths have no URL.
        assert!(find("dmavm.pci.strict").get("log_url").is_none());
        let ids: std::collections::HashSet<&str> = tests.iter().filter_map(|t| t["id"].as_str()).collect();
        assert_eq!(ids.len(), tests.len());
    }

    #[test]
    fn the_net_check_is_a_test_of_runs_with_network_devices_only() {
        let mut r = report();
        // pci/lazy failed at devices; give it network devices: its net
        // check was not judged, so it is missing, not an error.
        r.runs[1].net = true;
        let mut passed = r.runs[0].clone();
        passed.name = "net/ok".into();
        passed.machine = "net".into();
        passed.variant = Some("ok".into());
        passed.net = true;
        passed.checks.push(crate::verdict::Check {
            name: "net".into(),
            passed: true,
            detail: "2 link(s) up".into(),
        });
        r.runs.push(passed);
        let s = submission(&r);
        let tests = s["tests"].as_array().unwrap();
        let status = |p: &str| tests.iter().find(|t| t["path"] == p).map(|t| t["status"].clone());
        assert_eq!(status("dmavm.pci.lazy.net"), Some(json!("MISS")));
        assert_eq!(status("dmavm.net.ok.net"), Some(json!("PASS")));
        assert_eq!(status("dmavm.pci.strict.net"), None, "a run without network devices has no net test");
    }

    /// The validator of resources/tools/install-kcidb.sh's venv; a missing
    /// venv fails the test, which must not pass without having checked.
    pub(crate) fn validate(submission: &Value, name: &str) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join("build/tools/kcidb/bin/python3");
        assert!(
            python.exists(),
            "{} is missing: run resources/setup.sh (resources/tools/install-kcidb.sh installs kcidb-io); \
             this test checks the --kcidb output against KCIDB's published schema and must not be skipped",
            python.display()
        );
        let file = std::env::temp_dir().join(format!("dmavm-kcidb-{}-{name}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_string(submission).unwrap()).unwrap();
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(VALIDATE)
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "{name}: the KCIDB 5.3 schema refuses the submission:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            serde_json::to_string_pretty(submission).unwrap()
        );
    }

    /// Checks the file of argv[1] against exactly schema 5.3.
    pub(crate) const VALIDATE: &str = "import json, sys, kcidb_io\n\
        v = kcidb_io.schema.V5_3\n\
        assert (v.major, v.minor) == (5, 3)\n\
        v.validate_exactly(json.load(open(sys.argv[1])))\n";

    #[test]
    fn the_published_schema_takes_passing_failing_and_timed_out_matrices() {
        let whole = report();
        let only = |outcomes: &[Outcome]| {
            let mut r = whole.clone();
            r.runs.retain(|x| outcomes.contains(&x.outcome));
            for x in &mut r.runs {
                x.log = Some("/tmp/dmavm logs/x.log".into());
            }
            r
        };
        validate(&submission(&only(&[Outcome::Passed])), "passing");
        validate(&submission(&only(&[Outcome::Passed, Outcome::Failed])), "failing");
        validate(&submission(&only(&[Outcome::Timeout])), "timed-out");
        validate(&submission(&whole), "all");
        // The validator is not a rubber stamp: a status KCIDB does not know.
        let mut bad = submission(&whole);
        bad["tests"][0]["status"] = json!("TIMEOUT");
        let file = std::env::temp_dir().join(format!("dmavm-kcidb-{}-bad.json", std::process::id()));
        std::fs::write(&file, bad.to_string()).unwrap();
        let python =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/tools/kcidb/bin/python3");
        let out = std::process::Command::new(python).arg("-c").arg(VALIDATE).arg(&file).output().unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("TIMEOUT"));
    }

    #[test]
    fn file_urls() {
        assert_eq!(file_url("/a b/c%.log").as_deref(), Some("file:///a%20b/c%25.log"));
        assert_eq!(file_url("rel/x"), None);
    }
}
