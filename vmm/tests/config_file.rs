//! `--config FILE` through the binary: a bad file is one error line naming
//! the file, the line and the key; a file machine that breaks a DMA rule is
//! refused with the same coded line as the options would be; options go
//! over the file. No KVM is touched (the KVM device does not exist).

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

fn dmavm(args: &[&str]) -> Output {
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(config: &Path, extra: &[&str]) -> Output {
    let base = ["run", "--kvm-device", "/nonexistent/kvm", "--config", config.to_str().unwrap()];
    dmavm(&base.iter().chain(extra).copied().collect::<Vec<_>>())
}

#[test]
fn a_bad_file_is_one_line_with_file_line_and_key() {
    let bad = file(
        "bad-key.toml",
        "cpus = 2\nkernel = \"k\"\n\n[[disk]]\nid = \"data\"\npath = \"d.img\"\nreadonlyy = true\n",
    );
    let out = run(&bad, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let expected = format!(
        "dmavm: error: {}:7: disk 'data': unknown key 'readonlyy' (known: path, readonly, id, transport, coherent, \
         direct-ram-access, bridge, slot, addr, dma-pool)",
        bad.display()
    );
    assert_eq!(err.trim_end(), expected);

    let out = dmavm(&["run", "--config", "/nonexistent/machine.toml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("dmavm: error: cannot read the config file /nonexistent/machine.toml: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // The file must give a kernel if the command line does not.
    let empty = file("no-kernel.toml", "cpus = 1\n");
    let err = stderr(&run(&empty, &[]));
    assert!(
        err.starts_with(
            "dmavm: error: give --kernel or --payload (or kernel = \"PATH\" in the --config file)"
        ),
        "{err}"
    );
}

#[test]
fn a_file_machine_breaking_a_rule_is_refused_with_its_code() {
    let broken = file(
        "dma002.toml",
        "kernel = \"/nonexistent/vmlinuz\"\n[[pci-bridge]]\nid = \"slow\"\ncoherent = false\n\n[[disk]]\nid = \"data\"\npath = \"d.img\"\ntransport = \"pci\"\nbridge = \"slow\"\ncoherent = true\n",
    );
    let out = run(&broken, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("dmavm: error: [DMA002] data: coherent=on conflicts with its host bridge slow"),
        "{err}"
    );
    // The command line over the file: the same id= replaces the disk, and
    // the machine passes the checks (then fails on the missing disk image,
    // before KVM).
    let out = run(&broken, &["--disk", "path=d.img,transport=pci,bridge=slow,id=data"]);
    let err = stderr(&out);
    assert!(!err.contains("[DMA002]"), "{err}");
    assert!(err.contains("dmavm: warning: [DMA101] host bridge slow"), "{err}");
    assert!(err.contains("dmavm: error: data: cannot open the disk image d.img"), "{err}");
}

#[test]
fn describe_takes_the_same_file() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../resources/machines/bridges.toml");
    let out = dmavm(&["describe", "--arch", "x86_64", "--config", example.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout.contains("scratch") && stdout.contains("0001:00:01.0"), "{stdout}");
    assert!(stdout.contains("[DMA104] scratch bypasses iommu0"), "{stdout}");
    // The command line over the file, as for run: the disk of the same id
    // is replaced, by one that breaks DMA001.
    let out = dmavm(&[
        "describe",
        "--arch",
        "x86_64",
        "--config",
        example.to_str().unwrap(),
        "--disk",
        "path=x.img,id=scratch,transport=pci,bridge=fast,direct-ram-access=off",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Each missing disk image is a warning first: describe does not need them.
    let error = err.lines().find(|l| !l.starts_with("dmavm: warn: ")).unwrap_or_default();
    assert!(
        error.starts_with("dmavm: error: [DMA001] scratch: direct-ram-access=off is impossible"),
        "{err}"
    );
}
