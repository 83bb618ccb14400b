//! `dmavm boot-test` through the binary, without booting a guest: its
//! exit statuses for bad input, its help, and a whole direct-mode matrix
//! whose VMs cannot start (the KVM device does not exist), which must
//! still produce a failing report for every run and leave no temporary
//! files. Real guests boot in tests/tests/boot_test.rs (dmavm-tests).

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmavm-boot-test-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn boot_test(args: &[&str], tmp: &Path) -> Output {
    Command::new(DMAVM)
        .arg("boot-test")
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .output()
        .expect("starting dmavm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_input_is_status_2_with_one_line() {
    let dir = scratch("bad");
    let kernel = dir.join("bzImage");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[machine.a]\n").unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[machine.a]\n[[machine.a.disk]]\ntransport = \"usb\"\n").unwrap();
    let k = kernel.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--kernel", k, "--matrix", bad.to_str().unwrap()],
            "bad.toml:3: machine 'a': disk #1: transport=usb: expected mmio or pci",
        ),
        (vec!["--kernel", k, "--matrix", "/nonexistent.toml"], "cannot read the matrix /nonexistent.toml"),
        (
            vec!["--kernel", k, "--matrix", good.to_str().unwrap(), "--only", "b"],
            "--only b: no run of the matrix",
        ),
        (vec!["--kernel", k, "--matrix", good.to_str().unwrap(), "--jobs", "0"], "expected from 1 to 64"),
        (vec!["--kernel", k], "--matrix"),
    ] {
        let out = boot_test(&args, &dir);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A kernel that is not there cannot be tested: git bisect run skips
    // the commit (125) rather than calling it bad.
    let out = boot_test(&["--kernel", "/nonexistent/bzImage", "--matrix", good.to_str().unwrap()], &dir);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim(), "dmavm: error: --kernel /nonexistent/bzImage: no such file");
    let out = boot_test(&["merge", good.to_str().unwrap()], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a dmavm boot-test --json report"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_lists_the_checks_and_patterns() {
    let out = Command::new(DMAVM).args(["boot-test", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--matrix",
        "--jobs",
        "--timeout",
        "--junit",
        "--json",
        "--logs",
        "--fail-pattern",
        "--sandbox",
        "'WARNING:'",
        "'BUG:'",
        "'Oops'",
        "fault from EP",
        "iommu-groups",
        "access-platform",
        "vmm-stats",
        "--shard",
        "--kcidb",
        "reproduce-RUN.sh",
        "--modules",
        "0 every run passed, 1 some run failed, 125 the kernel could not be tested",
    ] {
        assert!(help.contains(needle), "{needle}:\n{help}");
    }
}

#[test]
fn vms_that_cannot_start_fail_every_run_and_leave_nothing_behind() {
    let dir = scratch("direct");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let kernel = dir.join("bzImage");
    let initrd = dir.join("initrd");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    std::fs::write(&initrd, b"not an initrd").unwrap();
    let matrix = dir.join("m.toml");
    std::fs::write(
        &matrix,
        "[variants]\nlazy = \"\"\nstrict = \"iommu.strict=1\"\n[machine.a]\n[machine.a.iommu]\n[[machine.a.disk]]\ntransport = \"pci\"\n[machine.b]\nvariants = []\n[[machine.b.rng]]\n",
    )
    .unwrap();
    let (json, junit, logs) = (dir.join("r.json"), dir.join("r.xml"), dir.join("logs"));
    let out = boot_test(
        &[
            "--direct",
            "--kvm-device",
            "/nonexistent/kvm",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--matrix",
            matrix.to_str().unwrap(),
            "--jobs",
            "2",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--logs",
            logs.to_str().unwrap(),
        ],
        &tmp,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("boot-test: 3 runs, 2 at a time, direct"), "{stderr}");
    assert!(stderr.contains("[3/3, 3 failed]"), "{stderr}");
    for run in ["a/lazy", "a/strict", "b"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(run)
                && l.contains("FAILED")
                && l.contains("boot: the kernel never reached init")),
            "{run}: {stdout}"
        );
    }
    assert!(stdout.contains("0 of 3 runs passed, 3 failed (direct mode, 2 at a time"), "{stdout}");
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains("\"total\": 3") && report.contains("\"failed\": 3"), "{report}");
    assert!(report.contains("/nonexistent/kvm"), "the child's error is in the detail: {report}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"dmavm boot-test\" tests=\"3\" failures=\"3\" errors=\"0\""),
        "{xml}"
    );
    let log = std::fs::read_to_string(logs.join("a_strict.log")).unwrap();
    assert!(log.contains("dmavm: error:"), "{log}");
    // Every failed run can be re-run by hand: its script starts `dmavm run`
    // on the same KVM device with the kept initramfs.
    for run in ["a_lazy", "a_strict", "b"] {
        let script = std::fs::read_to_string(logs.join(format!("reproduce-{run}.sh"))).unwrap();
        assert!(
            script.contains("\"$dmavm\" run --kernel") && script.contains("'/nonexistent/kvm'"),
            "{script}"
        );
        let out = Command::new("sh").arg(logs.join(format!("reproduce-{run}.sh"))).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "the VM fails as in the run: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("/nonexistent/kvm"), "{}", text(&out.stderr));
    }
    assert_eq!(std::fs::read(logs.join("initrd.img")).unwrap().get(..13), Some(&b"not an initrd"[..]));
    // No temporary folder left.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--shard 1/2` and `2/2` of a matrix, merged, are the unsharded run:
/// the same runs in the same order with the same verdicts and totals, in
/// JSON, JUnit and KCIDB. (The VMs cannot start; real guests are sharded
/// in tests/tests/boot_test.rs.)
#[test]
fn shards_merge_into_the_unsharded_report() {
    let dir = scratch("shards");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let kernel = dir.join("bzImage");
    let initrd = dir.join("initrd");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    std::fs::write(&initrd, b"not an initrd").unwrap();
    let matrix = dir.join("m.toml");
    let machines: String = (0..6).map(|i| format!("[machine.m{i}]\n[[machine.m{i}.rng]]\n")).collect();
    std::fs::write(&matrix, format!("[variants]\nlazy = \"\"\nstrict = \"iommu.strict=1\"\n{machines}"))
        .unwrap();
    let run = |extra: &[&str], json: &Path| {
        let mut args = vec![
            "--direct",
            "--kvm-device",
            "/nonexistent/kvm",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--matrix",
            matrix.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = boot_test(&args, &tmp);
        assert_eq!(out.status.code(), Some(1), "every VM fails: {}", text(&out.stderr));
        out
    };
    let whole = dir.join("whole.json");
    run(&[], &whole);
    let (s1, s2) = (dir.join("s1.json"), dir.join("s2.json"));
    run(&["--shard", "1/2"], &s1);
    run(&["--shard", "2/2"], &s2);
    let (merged, junit, kcidb) = (dir.join("merged.json"), dir.join("merged.xml"), dir.join("kcidb.json"));
    let out = Command::new(DMAVM)
        .args(["boot-test", "merge", "--json"])
        .arg(&merged)
        .arg("--junit")
        .arg(&junit)
        .arg("--kcidb")
        .arg(&kcidb)
        .arg(&s2)
        .arg(&s1)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 of 12 runs passed, 12 failed"), "{}", text(&out.stdout));
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let runs = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r["outcome"].as_str().unwrap().to_string()))
            .collect()
    };
    let (w, m) = (read(&whole), read(&merged));
    assert_eq!(runs(&m), runs(&w));
    for k in ["total", "passed", "failed", "matrix_total", "kernel_sha256"] {
        assert_eq!(m[k], w[k], "{k}");
    }
    let (a, b) = (read(&s1), read(&s2));
    assert_eq!(runs(&a).len() + runs(&b).len(), 12);
    assert!(!runs(&a).is_empty() && !runs(&b).is_empty());
    assert!(std::fs::read_to_string(&junit).unwrap().contains("tests=\"12\" failures=\"12\" errors=\"0\""));
    assert_eq!(read(&kcidb)["tests"].as_array().unwrap().len(), 12 * 9, "a node per run and one per check");
    // A shard twice, or one missing, is refused.
    let out = Command::new(DMAVM).args(["boot-test", "merge"]).arg(&s1).arg(&s1).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("shard 1/2 again"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
