//! The configuration checks through the binary: `run` refuses every error
//! configuration with one `dmavm: error: [CODE] ...` line and a non-zero
//! exit before it touches KVM (the KVM device given here does not exist,
//! so any later failure would say so instead), prints warnings as
//! `dmavm: warning: [CODE] ...` and goes on; `dmavm explain` explains every
//! code.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// Every code, as `dmavm explain` lists them.
const CODES: &[&str] = &[
    "DMA001", "DMA002", "DMA003", "DMA004", "DMA005", "DMA006", "DMA007", "DMA101", "DMA102", "DMA103",
    "DMA104", "DMA105", "DMA106",
];

/// Errors `run` can only show on a host of the other architecture (it
/// builds the host's machine): DMA006 refuses VT-d on aarch64.
#[cfg(target_arch = "x86_64")]
const OTHER_HOST_ONLY: &[&str] = &["DMA006"];
#[cfg(target_arch = "aarch64")]
const OTHER_HOST_ONLY: &[&str] = &["DMA007"];

fn dmavm(args: &[&str]) -> Output {
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `run` with a payload and KVM device that are never opened.
fn run(extra: &[&str]) -> Output {
    let base =
        ["run", "--payload", "/nonexistent/p.bin", "--memory", "64M", "--kvm-device", "/nonexistent/kvm"];
    dmavm(&base.iter().chain(extra).copied().collect::<Vec<_>>())
}

#[test]
fn run_refuses_every_error_before_kvm() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "DMA001",
            &[
                "--pci-bridge",
                "id=fast,direct-ram-access=on",
                "--disk",
                "path=d.img,transport=pci,bridge=fast,direct-ram-access=off",
            ],
            "disk0: direct-ram-access=off is impossible on host bridge fast",
        ),
        (
            "DMA002",
            &["--disk", "path=d.img,transport=pci,coherent=off"],
            "disk0: coherent=off conflicts with its host bridge pci0",
        ),
        (
            "DMA003",
            &["--pci-bridge", "id=hp,hotplug=on", "--rng", "transport=pci,bridge=hp,direct-ram-access=on"],
            "rng0: direct-ram-access=on is not allowed on host bridge hp",
        ),
        (
            "DMA004",
            &["--iommu", "direct-ram-access=off"],
            "iommu0: direct-ram-access=off would put the IOMMU in its own scope",
        ),
        (
            "DMA005",
            &["--disk", "path=d.img,transport=pci,slot=2", "--rng", "transport=pci,slot=2"],
            "disk0 and rng0 both sit at PCI 0000:00:02.0",
        ),
        (
            "DMA005",
            &["--rng", "addr=0xd0002000", "--console", "addr=0xd0002000"],
            "rng0 and console0 both sit at virtio-mmio window 0xd0002000",
        ),
        #[cfg(target_arch = "aarch64")]
        (
            "DMA006",
            &["--iommu", "type=vtd", "--disk", "path=d.img,transport=pci"],
            "--iommu type=vtd: Intel VT-d is an x86 IOMMU",
        ),
        #[cfg(target_arch = "x86_64")]
        (
            "DMA007",
            &["--iommu", "type=vtd", "--disk", "path=d.img,transport=pci", "--rng", ""],
            "rng0: a translated virtio-mmio device cannot be behind VT-d",
        ),
    ];
    for (code, extra, needle) in cases {
        let out = run(extra);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line expected, got: {err}");
        let prefix = format!("dmavm: error: [{code}] ");
        assert!(err.starts_with(&prefix), "{extra:?}: expected {prefix:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: expected {needle:?} in: {err}");
    }
    let covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for code in CODES.iter().filter(|c| c.starts_with("DMA0") && !OTHER_HOST_ONLY.contains(c)) {
        assert!(covered.contains(code), "{code} is not refused by any case");
    }
}

#[test]
fn run_warns_and_goes_on() {
    let out = run(&["--iommu", "", "--disk", "path=d.img,coherent=off", "--rng", ""]);
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "{err}");
    assert!(lines[0].starts_with("dmavm: warning: [DMA101] disk0: declared coherent=off"), "{err}");
    assert!(
        lines[1].starts_with("dmavm: warning: [DMA103] translated devices of different coherency"),
        "{err}"
    );
    // Then the files are checked, before KVM: here the disk image is missing.
    let last = lines.last().unwrap();
    assert!(last.starts_with("dmavm: error: disk0: cannot open the disk image d.img"), "{err}");
    assert!(!err.contains("[DMA0"), "{err}");
    // --log-level error keeps warnings quiet.
    let out = run(&["--log-level", "error", "--disk", "path=d.img,coherent=off"]);
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
}

/// `run`'s line for the extra options, and `describe`'s for `arch`.
fn run_and_describe(extra: &[&str], arch: &str) -> (Output, Output) {
    let described = dmavm(&[&["describe", "--arch", arch][..], extra].concat());
    (run(extra), described)
}

#[test]
fn run_and_describe_refuse_vtd_alike() {
    let host = std::env::consts::ARCH;
    // A translated virtio-mmio device under VT-d: refused by both, with
    // the same line, on either architecture's machine (on aarch64 DMA006
    // comes first).
    let extra = ["--iommu", "type=vtd", "--disk", "path=d.img,transport=pci", "--rng", ""];
    let (run_out, described) = run_and_describe(&extra, host);
    let err = text(&run_out.stderr);
    assert_eq!(run_out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // describe also warns that the disk image is missing, then fails with
    // run's line.
    assert_eq!(text(&described.stderr).lines().last(), err.lines().next(), "describe and run disagree");
    assert_eq!(described.status.code(), Some(1));
    if host == "x86_64" {
        assert!(err.starts_with("dmavm: error: [DMA007] rng0: a translated virtio-mmio device"), "{err}");
        assert!(err.contains("use transport=pci, or direct-ram-access=on"), "{err}");
    }
    // VT-d on an aarch64 machine: describe shows it on any host.
    let extra = ["--iommu", "type=vtd", "--disk", "path=d.img,transport=pci"];
    let described = dmavm(&[&["describe", "--arch", "aarch64"][..], &extra[..]].concat());
    let stderr = text(&described.stderr);
    assert_eq!(described.status.code(), Some(1), "{stderr}");
    let err = stderr.lines().last().unwrap_or_default();
    assert!(err.starts_with("dmavm: error: [DMA006] --iommu type=vtd: Intel VT-d is an x86 IOMMU"), "{err}");
    assert!(text(&described.stdout).contains("error: [DMA006]"), "every finding is listed");
    if host == "aarch64" {
        assert_eq!(text(&run(&extra).stderr).trim_end(), err, "describe and run disagree");
    }
}

#[test]
fn one_iommu_per_machine_of_one_type() {
    // Two IOMMUs cannot be asked for: --iommu is one option with one type.
    for (extra, needle) in [
        (&["--iommu", "type=vtd", "--iommu", ""][..], "'--iommu [<KEYS>]' cannot be used multiple times"),
        (&["--iommu", "type=vtd,type=virtio"], "key 'type' given twice"),
        (&["--iommu", "type=vtd,transport=pci"], "transport=pci: a key of type=virtio: a VT-d unit"),
        (&["--iommu", "coherent=off"], "coherent=off: a key of type=vtd"),
        (&["--iommu", "type=amd"], "type=amd: expected virtio or vtd"),
    ] {
        let out = run(extra);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: expected {needle:?} in: {err}");
    }
}

#[test]
fn explain_lists_and_explains_every_code() {
    let out = dmavm(&["explain"]);
    assert_eq!(out.status.code(), Some(0));
    let list = text(&out.stdout);
    for code in CODES {
        let line =
            list.lines().find(|l| l.starts_with(code)).unwrap_or_else(|| panic!("{code} not listed: {list}"));
        let severity = if code.starts_with("DMA0") { "error" } else { "warning" };
        assert!(line.contains(severity), "{line}");
        let out = dmavm(&["explain", code]);
        assert_eq!(out.status.code(), Some(0), "{code}");
        let explained = text(&out.stdout);
        assert!(explained.starts_with(&format!("{code} ({severity}): ")), "{explained}");
        assert!(explained.contains("Fix:"), "{explained}");
    }
    let out = dmavm(&["explain", "dma005"]);
    assert!(text(&out.stdout).starts_with("DMA005 (error): two devices sit at one address"));
    let out = dmavm(&["explain", "DMA999"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("dmavm: error: no check has the code 'DMA999'"), "{err}");
    assert!(text(&out.stdout).is_empty());
}
