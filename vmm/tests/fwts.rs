//! The ACPI tables `dmavm describe --arch x86_64 --dump-acpi` writes, checked
//! by the Firmware Test Suite: fwts's ACPI tests (`--acpitests`) read the
//! table files (`--table-path`), and any FAILED result of severity medium or
//! higher fails the test, with fwts's lines. fwts comes from
//! resources/tools/install-fwts.sh (resources/setup.sh runs it); a missing
//! fwts fails the test: it must not pass without having checked.
//!
//! fwts is written to test the machine it runs on, and a few of its checks
//! look at this host rather than at the table files; those exact checks are
//! excluded in [`HOST_CHECKS`]. It runs in a new user namespace
//! (`unshare --user --map-root-user`): root to itself, as it wants, but
//! without the host privileges that would let it open `/dev/mem`, I/O ports
//! or MSRs. Its `dmar` test looks up every PCI function a DMAR device scope
//! names in `/sys/bus/pci/devices`: there, in a mount namespace of its own,
//! it finds the guest's PCI functions (the machine's, from `describe`), not
//! the host's.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// Machines whose tables differ in what fwts checks: one and four vCPUs
/// (MADT entries and the DSDT's processor devices), virtio-mmio only (no
/// MCFG), PCI with and without an IOMMU (VIOT), on two host bridges (two
/// MCFG entries, two PNP0A08 devices) and with the IOMMU on virtio-mmio.
const MACHINES: &[(&str, &[&str])] = &[
    (
        // The hot-plug controller (every machine has its power button) with
        // slots on a translated and a bypassed hotplug=on bridge, one slot
        // taken at boot.
        "one-cpu-iommu-hotplug",
        &[
            "--cpus",
            "1",
            "--iommu",
            "--pci-bridge",
            "id=hpt,hotplug=on",
            "--pci-bridge",
            "id=hpb,hotplug=on,direct-ram-access=on",
            "--disk",
            "path=a,transport=pci,bridge=hpt",
        ],
    ),
    ("one-cpu-mmio", &["--cpus", "1", "--disk", "path=a", "--rng", "--console"]),
    ("four-cpus-pci-no-iommu", &["--cpus", "4", "--disk", "path=a,transport=pci", "--rng"]),
    (
        "one-cpu-iommu-bridges",
        &[
            "--cpus",
            "1",
            "--iommu",
            "--pci-bridge",
            "id=slow,coherent=off",
            "--disk",
            "path=a,transport=pci",
            "--disk",
            "path=b,transport=pci,bridge=slow",
            "--disk",
            "path=c",
            "--rng",
            "direct-ram-access=on",
        ],
    ),
    (
        "four-cpus-mmio-iommu-bridge",
        &[
            "--cpus",
            "4",
            "--iommu",
            "transport=mmio",
            "--pci-bridge",
            "id=b1",
            "--disk",
            "path=a,transport=pci,bridge=b1",
            "--disk",
            "path=b,coherent=off",
            "--rng",
        ],
    ),
    (
        // A DMAR: a unit with explicit scopes on segment 0 (a bypassing
        // function left out), one for the whole of a hot-pluggable bridge,
        // a bypassing bridge with no unit.
        "two-cpus-vtd-bridges",
        &[
            "--cpus",
            "2",
            "--iommu",
            "type=vtd",
            "--pci-bridge",
            "id=hp,hotplug=on",
            "--pci-bridge",
            "id=fast,direct-ram-access=on",
            "--disk",
            "path=a,transport=pci",
            "--disk",
            "path=b,transport=pci,direct-ram-access=on",
            "--disk",
            "path=c,transport=pci,bridge=fast",
            "--rng",
            "transport=pci",
            "--console",
            "transport=pci,bridge=hp",
        ],
    ),
];

/// The machines whose tables have a DMAR.
const VTD_MACHINES: &[&str] = &["two-cpus-vtd-bridges"];

/// Machines with hot-pluggable slots: fwts's method test evaluates the
/// slots' `_STA`, `_SUN` and `_EJ0`. (Its `_EVT` test does not find the
/// hot-plug controller's `_EVT`, and skips; the `hotplug` guest suite
/// has Linux run it.)
const HOTPLUG_MACHINES: &[&str] = &["one-cpu-iommu-hotplug"];

/// fwts checks (by their labels) that judge this host instead of the table
/// files, with why; only these are excluded.
const HOST_CHECKS: &[(&str, &str)] = &[
    (
        "MCFGMMIONotReserved",
        "mcfg test 1 looks for the ECAM in this host's memory map (/sys/firmware/memmap), not in \
         the guest's E820, which dmavm builds elsewhere and which does reserve it",
    ),
    (
        "MMapUnmappable",
        "mcfg test 2 maps the ECAM's address through this host's /dev/mem, which the user \
         namespace denies on purpose: it would read the host's physical memory, not the guest's",
    ),
];

/// Severities that fail the test (fwts also has LOW, which does not).
const FAILING: &[&str] = &["CRITICAL", "HIGH", "MEDIUM"];

/// The fwts wrapper resources/tools/install-fwts.sh writes.
fn fwts() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/tools/bin/fwts");
    assert!(
        path.exists(),
        "{} not found: run resources/setup.sh (it installs fwts with resources/tools/install-fwts.sh); \
         this test checks the ACPI tables with it and must not be skipped",
        path.display()
    );
    path
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fwts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What fwts said about the tables of one machine.
struct Report {
    /// The whole results log.
    log: String,
    /// Each FAILED line, with the name of the fwts test it came from.
    failures: Vec<(String, String)>,
}

/// The PCI functions of the machine of `args`, `ssss:bb:dd.f`, as
/// `describe --format json` lists its devices (host bridges but not their
/// own rows).
fn pci_functions(args: &[&str]) -> Vec<String> {
    let out = Command::new(DMAVM)
        .args(["describe", "--arch", "x86_64", "--format", "json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("starting dmavm");
    assert!(
        out.status.success(),
        "{args:?}: dmavm describe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("describe JSON");
    let devices = json["devices"].as_array().expect("devices");
    devices
        .iter()
        .filter(|d| d["kind"] != "pci-host-bridge")
        .filter_map(|d| {
            let a = d["address"].get("pci")?;
            let n = |k: &str| a[k].as_u64().expect("PCI address field");
            Some(format!("{:04x}:{:02x}:{:02x}.{:x}", n("segment"), n("bus"), n("device"), n("function")))
        })
        .collect()
}

/// A shell script that mounts an empty tmpfs over `/sys/bus/pci/devices`
/// and gives each of `functions` the 64 bytes of configuration space fwts
/// reads there (header type 0 at 0x0e: an endpoint), then runs its
/// arguments. Run in a new user and mount namespace, it changes nothing
/// outside.
fn with_guest_pci_script(functions: &[String]) -> String {
    let mut script = String::from("set -e; d=/sys/bus/pci/devices; mount -t tmpfs guest-pci $d; ");
    for f in functions {
        script.push_str(&format!("mkdir $d/{f}; head -c 64 /dev/zero > $d/{f}/config; "));
    }
    script.push_str("exec \"$@\"");
    script
}

/// Dumps the tables of `args` and runs fwts's ACPI tests on them, with the
/// machine's PCI functions in fwts's view of sysfs.
fn check(name: &str, args: &[&str]) -> Report {
    check_with_functions(name, args, &pci_functions(args))
}

/// [`check`] with `functions` as the PCI functions fwts finds.
fn check_with_functions(name: &str, args: &[&str], functions: &[String]) -> Report {
    let dir = work_dir(name);
    let tables = dir.join("tables");
    let out = Command::new(DMAVM)
        .args(["describe", "--arch", "x86_64", "--dump-acpi"])
        .arg(&tables)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("starting dmavm");
    assert!(out.status.success(), "{name}: dmavm describe failed: {}", String::from_utf8_lossy(&out.stderr));

    let results = dir.join("results.log");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(with_guest_pci_script(functions))
        .arg("sh")
        .arg(fwts())
        .arg("--acpitests")
        .arg(format!("--table-path={}", tables.display()))
        // one result per line, however long
        .args(["--log-width=1000", "--results-output"])
        .arg(&results)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("starting unshare (util-linux)");
    let log = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        panic!(
            "{name}: fwts wrote no results ({e}; exit {}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });

    // Section headers are "name: description" followed by a line of dashes.
    let lines: Vec<&str> = log.lines().collect();
    let mut test = String::new();
    let mut failures = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if lines.get(i + 1).is_some_and(|next| next.starts_with("-----")) {
            if let Some((t, _)) = line.split_once(": ") {
                test = t.to_string();
            }
        }
        if line.starts_with("FAILED") {
            failures.push((test.clone(), line.to_string()));
        }
    }
    Report { log, failures }
}

/// The severity and label of a `FAILED [SEVERITY] Label: text` line.
fn severity_and_label(line: &str) -> (&str, &str) {
    let rest = line.strip_prefix("FAILED [").unwrap_or_else(|| panic!("unexpected FAILED line {line:?}"));
    let (severity, rest) = rest.split_once("] ").unwrap_or_else(|| panic!("unexpected FAILED line {line:?}"));
    (severity, rest.split_once(':').map_or(rest, |(label, _)| label))
}

#[test]
fn fwts_finds_no_medium_or_worse_failure() {
    let mut problems = Vec::new();
    for &(name, args) in MACHINES {
        let report = check(name, args);
        // fwts read our tables, and ran the tests that matter here.
        assert!(
            report.log.contains("OEM DMAVM"),
            "{name}: fwts did not load the dumped tables:\n{}",
            report.log
        );
        if VTD_MACHINES.contains(&name) {
            assert!(
                report.log.contains("PASSED: Test 1, DMAR ACPI table has passed test."),
                "{name}: fwts's dmar test did not pass the DMAR:\n{}",
                report.log
            );
        }
        if HOTPLUG_MACHINES.contains(&name) {
            for method in ["_STA", "_SUN", "_EJ0"] {
                assert!(
                    report
                        .log
                        .lines()
                        .any(|l| l.contains(&format!(".S001.{method}")) && l.starts_with("PASSED")),
                    "{name}: fwts's method test passed no {method}:\n{}",
                    report.log
                );
            }
        }
        for test in ["madt:", "fadt:", "checksum:", "xsdt:", "rsdp:", "acpitables:", "method:", "dmar:"] {
            assert!(
                report.log.lines().any(|l| l.starts_with(test)),
                "{name}: fwts ran no {test} test:\n{}",
                report.log
            );
        }
        for (test, line) in &report.failures {
            let (severity, label) = severity_and_label(line);
            if FAILING.contains(&severity) && !HOST_CHECKS.iter().any(|(l, _)| *l == label) {
                problems.push(format!("{name}: fwts {test}: {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "fwts failures of severity medium or higher:\n{}", problems.join("\n"));
}

/// fwts's `dmar` test really looks at the scopes: with a translated
/// function missing from its view of the guest's PCI tree, it fails the
/// DMAR that names it.
#[test]
fn fwts_dmar_fails_a_scope_naming_a_missing_function() {
    let (name, args) = MACHINES.iter().find(|(n, _)| VTD_MACHINES.contains(n)).expect("a VT-d machine");
    let functions: Vec<String> = pci_functions(args).into_iter().filter(|f| f != "0000:00:01.0").collect();
    let report = check_with_functions(&format!("{name}-missing-function"), args, &functions);
    assert!(
        report.failures.iter().any(|(test, line)| test == "dmar" && line.contains("DevScopeDevNotFound")),
        "fwts dmar should fail a scope naming 0000:00:01.0 when the guest has no such function:\n{}",
        report.log
    );
}
