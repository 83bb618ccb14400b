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
    let problems = without_undocumented_memory_region(&text);
    assert!(problems.trim().is_empty(), "dt-validate reports problems:\n{text}");
}

/// dt-validate's report without its complaints about `memory-region` on a `virtio,mmio` node,
/// and only those. Linux confines a device to the restricted DMA pool its node names in
/// `memory-region`, whatever the device (`of_dma_set_restricted_buffer()` in
/// drivers/of/device.c, called from `of_dma_configure()` for every platform device), and this
/// property on a virtio-mmio node is how a pool is given to a virtio-mmio device; but Linux
/// 6.12's virtio/mmio.yaml lists no `memory-region` and allows no property it does not list.
/// The complaint is two lines: the node and the schema it comes from.
fn without_undocumented_memory_region(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let undocumented = line.contains(": virtio@")
            && line.contains(": memory-region: [[")
            && line.ends_with("]] is not of type 'object'");
        if undocumented
            && lines.peek().is_some_and(|l| {
                l.trim() == "from schema $id: http://devicetree.org/schemas/virtio/mmio.yaml#"
            })
        {
            lines.next();
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

#[test]
fn only_the_undocumented_memory_region_of_virtio_mmio_is_let_through() {
    let report = "a.dtb: virtio@a001000: memory-region: [[6]] is not of type 'object'\n\
                  \tfrom schema $id: http://devicetree.org/schemas/virtio/mmio.yaml#\n";
    assert_eq!(without_undocumented_memory_region(report), "");
    // The same property judged by another schema, or another property, stays a problem.
    for other in [
        "a.dtb: pcie@30000000: Unevaluated properties are not allowed ('memory-region' was unexpected)\n\
         \tfrom schema $id: http://devicetree.org/schemas/pci/host-generic-pci.yaml#",
        "a.dtb: virtio@a001000: iommus: [[6]] is not of type 'object'\n\
         \tfrom schema $id: http://devicetree.org/schemas/virtio/mmio.yaml#",
        "a.dtb: virtio@a001000: memory-region: [[6]] is not of type 'object'",
    ] {
        assert!(!without_undocumented_memory_region(other).is_empty(), "{other}");
    }
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
