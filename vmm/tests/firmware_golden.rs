//! What `dmavm describe` prints and writes for every example machine and
//! every firmware-agreement machine, on both architectures, compared byte
//! for byte with the recorded outputs in `tests/golden/`.
//!
//! The recorded files are the contract a refactoring must keep: the
//! machine model, the ACPI tables and the device tree a guest gets may only
//! change on purpose. After such a change, look at the difference
//! (`git diff vmm/tests/golden`) and record it with
//! `DMAVM_UPDATE_GOLDEN=1 cargo test -p dmavm --test firmware_golden`.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dmavm_machine::test_utils::CONFIGURATIONS;

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// Machines beyond the firmware-agreement ones
/// ([`dmavm_machine::test_utils::CONFIGURATIONS`]): more vCPUs, RAM above
/// 4 GiB.
const MORE_MACHINES: &[(&str, &[&str])] = &[(
    "four-cpus-5g",
    &[
        "--cpus",
        "4",
        "--memory",
        "5G",
        "--iommu",
        "--pci-bridge",
        "id=slow,coherent=off",
        "--disk",
        "path=a.img,transport=pci",
        "--disk",
        "path=b.img",
        "--rng",
        "transport=pci,bridge=slow",
        "--console",
        "direct-ram-access=on",
    ],
)];

/// Machines only x86_64 can have, recorded for it only: `describe --arch
/// aarch64` refuses them (DMA006, VT-d is an x86 IOMMU), which the test
/// checks instead.
const X86_64_ONLY: &[&str] = &["example-vtd"];

/// The initrd size the aarch64 `/chosen` is described with: fixed, so that
/// the recorded device trees do not depend on a built guest image.
const INITRD_SIZE: usize = 3 * 1024 * 1024 + 123;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("firmware-golden");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every machine: the example files and the command lines.
fn machines() -> Vec<(String, Vec<String>)> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/machines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the example machines in {}", examples.display());
    let mut all: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (format!("example-{name}"), vec!["--config".into(), p.display().to_string()])
        })
        .collect();
    for (name, args) in CONFIGURATIONS.iter().chain(MORE_MACHINES) {
        all.push(((*name).to_string(), args.iter().map(|a| (*a).to_string()).collect()));
    }
    all
}

/// Runs `dmavm describe ARGS`, which must succeed; returns stdout.
fn describe(args: &[String]) -> Vec<u8> {
    let out =
        Command::new(DMAVM).arg("describe").args(args).stdin(Stdio::null()).output().expect("starting dmavm");
    assert_eq!(
        out.status.code(),
        Some(0),
        "dmavm describe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The outputs of one machine on both architectures (x86_64 only when
/// `x86_64_only`), by file name.
fn outputs(args: &[String], work: &Path, initrd: &Path, x86_64_only: bool) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let acpi = work.join("acpi");
    let _ = std::fs::remove_dir_all(&acpi);
    std::fs::create_dir_all(&acpi).unwrap();
    let mut x86: Vec<String> = args.to_vec();
    x86.extend(["--arch", "x86_64", "--format", "json", "--dump-acpi"].map(String::from));
    x86.push(acpi.display().to_string());
    files.insert("x86_64-describe.json".into(), describe(&x86));
    let mut x86_table: Vec<String> = args.to_vec();
    x86_table.extend(["--arch", "x86_64"].map(String::from));
    files.insert("x86_64-describe.txt".into(), describe(&x86_table));
    let mut tables: Vec<PathBuf> = std::fs::read_dir(&acpi).unwrap().map(|e| e.unwrap().path()).collect();
    tables.sort();
    for t in tables {
        let name = format!("x86_64-{}", t.file_name().unwrap().to_string_lossy());
        files.insert(name, std::fs::read(&t).unwrap());
    }
    if x86_64_only {
        let mut arm: Vec<String> = args.to_vec();
        arm.extend(["--arch", "aarch64"].map(String::from));
        let out = Command::new(DMAVM).arg("describe").args(&arm).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} on aarch64: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("dmavm: error: [DMA006] "), "{args:?} on aarch64: {err}");
        return files;
    }

    let dtb = work.join("tree.dtb");
    let mut arm: Vec<String> = args.to_vec();
    arm.extend(["--arch", "aarch64", "--format", "json", "--initrd"].map(String::from));
    arm.push(initrd.display().to_string());
    arm.push("--dtb".into());
    arm.push(dtb.display().to_string());
    files.insert("aarch64-describe.json".into(), describe(&arm));
    let mut arm_table: Vec<String> = args.to_vec();
    arm_table.extend(["--arch", "aarch64", "--initrd"].map(String::from));
    arm_table.push(initrd.display().to_string());
    files.insert("aarch64-describe.txt".into(), describe(&arm_table));
    files.insert("aarch64-tree.dtb".into(), std::fs::read(&dtb).unwrap());
    files
}

/// The example files name their disks relative to themselves; the JSON and
/// table show them as given, so the recorded text must not depend on where
/// the checkout is.
fn without_checkout_path(bytes: Vec<u8>) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => text.replace(&root, "<checkout>").into_bytes(),
        Err(e) => e.into_bytes(),
    }
}

#[test]
fn describe_and_firmware_match_the_recorded_outputs() {
    let work = work_dir();
    let initrd = work.join("initrd.img");
    std::fs::write(&initrd, vec![0u8; INITRD_SIZE]).unwrap();
    let update = std::env::var_os("DMAVM_UPDATE_GOLDEN").is_some();
    let mut differences = Vec::new();
    for (name, args) in machines() {
        let expected_dir = golden_dir().join(&name);
        let got: BTreeMap<String, Vec<u8>> =
            outputs(&args, &work, &initrd, X86_64_ONLY.contains(&name.as_str()))
                .into_iter()
                .map(|(f, b)| (f, without_checkout_path(b)))
                .collect();
        if update {
            let _ = std::fs::remove_dir_all(&expected_dir);
            std::fs::create_dir_all(&expected_dir).unwrap();
            for (file, bytes) in &got {
                std::fs::write(expected_dir.join(file), bytes).unwrap();
            }
            continue;
        }
        let mut recorded: Vec<String> = std::fs::read_dir(&expected_dir)
            .unwrap_or_else(|e| {
                panic!("{}: {e} (record it with DMAVM_UPDATE_GOLDEN=1)", expected_dir.display())
            })
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        recorded.sort();
        let produced: Vec<String> = got.keys().cloned().collect();
        if recorded != produced {
            differences.push(format!("{name}: files {produced:?}, recorded {recorded:?}"));
            continue;
        }
        for (file, bytes) in &got {
            let want = std::fs::read(expected_dir.join(file)).unwrap();
            if &want != bytes {
                differences.push(format!("{name}/{file}: {} bytes, recorded {}", bytes.len(), want.len()));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "outputs differ from tests/golden (see the file's doc comment):\n{}",
        differences.join("\n")
    );
}
