//! Every test machine's blob checked by dtschema's `dt-validate` against Linux 6.12's device
//! tree bindings, as the kernel's `make dtbs_check` checks its own trees. resources/setup.sh
//! installs both through resources/tools/install-dtschema.sh, which documents the recipe:
//! dtschema 2024.11 in a venv at build/tools/dtschema, and the bindings of Debian's
//! linux-source-6.12 compiled by `dt-mk-schema -j` into
//! build/tools/linux-6.12-bindings/processed-schema.json. This test runs
//! `dt-validate -m -s processed-schema.json FILE.dtb...`.
//!
//! dt-validate exits 0 even when a tree breaks a schema, so any line it prints fails the test
//! (with `-m` that includes compatibles no schema knows). A missing tool or schema fails the
//! test too: it must not pass without having checked.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build_tools, machines, work_dir};
use dmavm_fdt::build;

fn tool_paths() -> (PathBuf, PathBuf) {
    let tools = build_tools();
    let validate = tools.join("dtschema/bin/dt-validate");
    let schema = tools.join("linux-6.12-bindings/processed-schema.json");
    for p in [&validate, &schema] {
        assert!(
            p.exists(),
            "{} is missing: run resources/setup.sh (resources/tools/install-dtschema.sh installs \
             dtschema and Linux 6.12's bindings); this test checks every generated device tree \
             against the bindings and must not be skipped",
            p.display()
        );
    }
    (validate, schema)
}

/// dt-validate's complete output for `dtbs`, which must have exited 0.
fn dt_validate(dtbs: &[PathBuf]) -> String {
    let (validate, schema) = tool_paths();
    let output = Command::new(&validate)
        .arg("-m")
        .arg("-s")
        .arg(&schema)
        .args(dtbs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validate.display()));
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "dt-validate failed ({}):\n{text}", output.status);
    text
}

fn write(dir: &Path, name: &str, blob: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.dtb"));
    fs::write(&path, blob).unwrap();
    path
}

#[test]
fn every_tree_validates_against_linux_6_12_bindings() {
    let dir = work_dir("dt-validate");
    let dtbs: Vec<PathBuf> = machines()
        .into_iter()
        .map(|(name, m)| write(&dir, name, &build(&m).unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect();
    let text = dt_validate(&dtbs);
    assert!(text.trim().is_empty(), "dt-validate reports problems:\n{text}");
}

#[test]
fn dt_validate_reports_a_broken_tree() {
    // The harness itself: dt-validate's silence above must mean the schemas were applied. A
    // virtio-mmio node without interrupts and a PL011 with an unknown property break
    // virtio/mmio.yaml and serial/pl011.yaml.
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("compatible", "linux,dummy-virt").unwrap();
    w.property_string("model", "broken").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let n = w.begin_node("virtio@a000000").unwrap();
    w.property_string("compatible", "virtio,mmio").unwrap();
    w.property_array_u64("reg", &[0xa00_0000, 0x200]).unwrap();
    w.end_node(n).unwrap();
    let n = w.begin_node("serial@9000000").unwrap();
    w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()]).unwrap();
    w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
    w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
    w.property_null("dmavm,bogus").unwrap();
    w.end_node(n).unwrap();
    w.end_node(root).unwrap();
    let dir = work_dir("dt-validate-broken");
    let text = dt_validate(&[write(&dir, "broken", &w.finish().unwrap())]);
    assert!(text.contains("virtio@a000000") && text.contains("interrupts"), "{text}");
    assert!(text.contains("serial@9000000") && text.contains("dmavm,bogus"), "{text}");
}
