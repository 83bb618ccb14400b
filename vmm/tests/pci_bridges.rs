//! `--pci-bridge` through the binary: every rejected combination of bridge
//! and device options gives one clear error line and a non-zero exit
//! (checked before KVM is touched), and the tables dmavm gives the guest
//! for a non-coherent bridge (`--dump-acpi`, disassembled by ACPICA's iasl)
//! say `_CCA` 0 on that root only, with a second MCFG allocation and no
//! VIOT range for the bypassing segment.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dmavm(args: &[&str]) -> Output {
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_bridge_options_get_one_clear_line() {
    // Never read: the machine model rejects these before dmavm opens KVM,
    // the payload or the disks.
    let base = ["run", "--payload", "/nonexistent/p.bin", "--memory", "64M"];
    let many: Vec<String> = (1..=16).map(|i| format!("id=b{i}")).collect();
    let mut sixteen: Vec<&str> = Vec::new();
    for b in &many {
        sixteen.extend(["--pci-bridge", b.as_str()]);
    }
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--pci-bridge", "coherent=off"], 2, "id=NAME is required (pci0 sets the default bridge's"),
        (&["--pci-bridge", "id=x,speed=fast"], 2, "unknown key 'speed'"),
        (&["--pci-bridge", "id=a", "--pci-bridge", "id=a"], 1, "--pci-bridge id=a is given twice"),
        (&["--pci-bridge", "id=pci0", "--pci-bridge", "id=pci0"], 1, "--pci-bridge id=pci0 is given twice"),
        (&sixteen, 1, "--pci-bridge id=b16: too many PCI host bridges (at most 16, pci0 included"),
        (
            &[
                "--pci-bridge",
                "id=fast,direct-ram-access=on",
                "--disk",
                "path=d.img,transport=pci,bridge=fast,direct-ram-access=off",
            ],
            1,
            "disk0: direct-ram-access=off is impossible on host bridge fast (direct-ram-access=on): that \
             bridge bypasses the IOMMU as a whole",
        ),
        (
            // The bridge's coherent=off warning must not come out before the error.
            &["--pci-bridge", "id=slow,coherent=off", "--disk", "path=d.img,transport=pci,bridge=slow,coherent=on"],
            1,
            "disk0: coherent=on conflicts with its host bridge slow (coherent=off): a PCI device's DMA \
             coherency is its host bridge's (_CCA on the root)",
        ),
        (
            &["--disk", "path=d.img,transport=pci,coherent=off"],
            1,
            "disk0: coherent=off conflicts with its host bridge pci0 (coherent=on)",
        ),
        (
            &["--pci-bridge", "id=hp,hotplug=on", "--rng", "transport=pci,bridge=hp,direct-ram-access=on"],
            1,
            "rng0: direct-ram-access=on is not allowed on host bridge hp (hotplug=on, direct-ram-access=off): \
             the IOMMU scope of a hot-pluggable bridge covers all its slots",
        ),
        (
            &["--pci-bridge", "id=fast", "--disk", "path=d.img,transport=pci,bridge=slow"],
            1,
            "disk0: bridge=slow: no such PCI host bridge (known: pci0, fast",
        ),
        (
            &["--pci-bridge", "id=fast", "--console", "bridge=fast"],
            1,
            "console0: bridge=fast needs transport=pci",
        ),
        (&["--iommu", "bridge=nope"], 1, "iommu0: bridge=nope: no such PCI host bridge"),
    ];
    for (extra, status, needle) in cases {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let out = dmavm(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*status), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line expected, got: {err}");
        assert!(err.starts_with("dmavm: error: "), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: expected {needle:?} in: {err}");
    }
}

/// Builds the test payloads (as vmm/tests/payload.rs does) and returns
/// hello's path.
fn hello_payload() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bridges-payloads");
    let status = Command::new(repo().join("resources/payloads/build.sh"))
        .arg(&dir)
        .status()
        .expect("running resources/payloads/build.sh");
    assert!(status.success(), "building the payloads failed (binutils installed? resources/setup.sh)");
    dir.join("hello.bin")
}

/// The iasl of resources/tools/install-iasl.sh (Debian 12's predates the
/// VIOT), else the one on PATH.
fn iasl() -> PathBuf {
    let local = repo().join("build/tools/bin/iasl");
    if local.exists() {
        local
    } else {
        PathBuf::from("iasl")
    }
}

/// `iasl -d DIR/SIG.dat`, clean; the disassembly with runs of spaces
/// squeezed.
fn disassemble(dir: &Path, signature: &str) -> String {
    let out = match Command::new(iasl()).args(["-d", &format!("{signature}.dat")]).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("iasl not found: run resources/setup.sh (this test must not be skipped)")
        }
        Err(e) => panic!("cannot run iasl: {e}"),
    };
    let console = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "iasl -d {signature}.dat failed:\n{console}");
    assert!(!console.to_lowercase().contains("error"), "iasl -d {signature}.dat:\n{console}");
    let dsl = std::fs::read_to_string(dir.join(format!("{signature}.dsl"))).expect("reading the disassembly");
    assert!(!dsl.contains("****"), "iasl flags a problem in {signature}:\n{dsl}");
    dsl.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

/// The text of `Device (name)` in a squeezed DSDT, up to the next device.
fn device<'a>(dsdt: &'a str, name: &str) -> &'a str {
    let start = dsdt.find(&format!("Device ({name})")).unwrap_or_else(|| panic!("no {name}:\n{dsdt}"));
    let end = dsdt[start + 4..].find("Device (").map_or(dsdt.len(), |e| start + 4 + e);
    &dsdt[start..end]
}

#[test]
fn a_non_coherent_bridge_declares_cca_0_on_its_root_only() {
    assert!(
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
        "this test runs a payload: it needs a usable /dev/kvm on this host"
    );
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bridges-cca");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let disk = tmp.join("d.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let tables = tmp.join("acpi");
    let (hello, disk, tables_arg) =
        (hello_payload(), disk.to_str().unwrap().to_owned(), tables.to_str().unwrap().to_owned());
    let out = dmavm(&[
        "run",
        "--payload",
        hello.to_str().unwrap(),
        "--memory",
        "64M",
        "--iommu",
        "--pci-bridge",
        "id=slow,coherent=off,direct-ram-access=on",
        "--disk",
        &format!("path={disk},transport=pci,readonly=on,id=translated"),
        "--disk",
        &format!("path={disk},transport=pci,readonly=on,id=bypassing,bridge=slow"),
        "--dump-acpi",
        &tables_arg,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the payload's status: {err}");
    assert!(err.contains("host bridge slow: declared coherent=off (_CCA 0 on segment 1)"), "{err}");

    let dsdt = disassemble(&tables, "DSDT");
    assert!(device(&dsdt, "PCI0").contains("Name (_CCA, One)"), "{dsdt}");
    let pci1 = device(&dsdt, "PCI1");
    for needle in ["Name (_CCA, Zero)", "Name (_SEG, One)", "Name (_BBN, Zero)"] {
        assert!(pci1.contains(needle), "PCI1 lacks {needle}:\n{dsdt}");
    }
    assert_eq!(dsdt.matches("Name (_CCA, Zero)").count(), 1, "_CCA 0 on segment 1's root only:\n{dsdt}");
    let mcfg = disassemble(&tables, "MCFG");
    assert!(mcfg.contains("Segment Group Number : 0001"), "{mcfg}");
    // The translated disk (00:02.0, after the IOMMU) is the only range.
    let viot = disassemble(&tables, "VIOT");
    assert_eq!(viot.matches("Type : 01 [PCI Range]").count(), 1, "{viot}");
    assert!(
        viot.contains("PCI Segment start : 0000") && !viot.contains("PCI Segment start : 0001"),
        "{viot}"
    );
    assert!(viot.contains("PCI BDF start : 0010"), "{viot}");
}
