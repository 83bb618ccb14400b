//! Every test machine's blob through dtc (Debian package device-tree-compiler, installed by
//! resources/setup.sh): `dtc -I dtb -O dts` must read it without a single warning (dtc runs all
//! its checks on its input, phandle references and their cell counts included), the DTS it
//! prints must compile back to the same tree, and the crate's own DTS rendering
//! ([`dmavm_fdt::to_dts`]) must compile to the same tree without a single warning.
//!
//! dtc prints phandles as bare numbers, and compiling such source warns "cell N is not a
//! phandle reference" for each one in `clocks`, `iommus` and the like (its checks want `&label`
//! references in source). Those warnings, and only those, are allowed when dtc's own output is
//! recompiled; the crate's rendering writes labels and must be clean. A missing dtc fails the
//! test: it must not pass without having checked.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{machines, work_dir};
use dmavm_fdt::{build, parse, to_dts};

/// Runs `dtc args...`; returns its stdout, failing on a non-zero exit or any stderr output
/// (dtc prints its warnings there).
fn dtc(args: &[&str]) -> String {
    dtc_allowing(args, |_| false)
}

/// As [`dtc`], but stderr lines for which `allowed` is true are not failures.
fn dtc_allowing(args: &[&str], allowed: fn(&str) -> bool) -> String {
    let output = match Command::new("dtc").args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "dtc not found: run resources/setup.sh (it installs device-tree-compiler); this test \
             checks every generated device tree with it and must not be skipped"
        ),
        Err(e) => panic!("cannot run dtc: {e}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtc {args:?} failed ({}):\n{stderr}", output.status);
    let unexpected: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !allowed(l)).collect();
    assert!(unexpected.is_empty(), "dtc {args:?} warned:\n{stderr}");
    String::from_utf8(output.stdout).expect("dtc output is UTF-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn dtc_reads_every_tree_without_warnings_and_round_trips_it() {
    let dir = work_dir("dtc");
    for (name, m) in machines() {
        let blob = build(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tree = parse(&blob).unwrap();
        let dtb = dir.join(format!("{name}.dtb"));
        fs::write(&dtb, &blob).unwrap();

        // dtb -> dts -> dtb with dtc alone.
        let dts = dir.join(format!("{name}.dtc.dts"));
        dtc(&["-I", "dtb", "-O", "dts", "-o", path(&dts), path(&dtb)]);
        let again = dir.join(format!("{name}.dtc.dtb"));
        dtc_allowing(&["-I", "dts", "-O", "dtb", "-o", path(&again), path(&dts)], |l| {
            l.contains("Warning (") && l.ends_with("is not a phandle reference")
        });
        assert_eq!(
            parse(&fs::read(&again).unwrap()).unwrap(),
            tree,
            "{name}: dtc's round trip changed the tree"
        );

        // Our rendering compiles back to the same tree.
        let ours = dir.join(format!("{name}.dts"));
        fs::write(&ours, to_dts(&blob).unwrap()).unwrap();
        let compiled = dir.join(format!("{name}.ours.dtb"));
        dtc(&["-I", "dts", "-O", "dtb", "-o", path(&compiled), path(&ours)]);
        assert_eq!(
            parse(&fs::read(&compiled).unwrap()).unwrap(),
            tree,
            "{name}: {} does not compile back to the blob's tree",
            ours.display()
        );
    }
}

#[test]
fn dtc_reports_a_broken_tree() {
    // The harness itself: a tree with a dangling interrupt-parent must make dtc warn, so a clean
    // run above means something.
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_u32("interrupt-parent", 7).unwrap();
    let n = w.begin_node("dev@1000").unwrap();
    w.property_array_u64("reg", &[0x1000, 0x100]).unwrap();
    w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
    w.end_node(n).unwrap();
    w.end_node(root).unwrap();
    let dir = work_dir("dtc-broken");
    let dtb = dir.join("broken.dtb");
    fs::write(&dtb, w.finish().unwrap()).unwrap();
    let output = Command::new("dtc").args(["-I", "dtb", "-O", "dts", path(&dtb)]).output().expect("run dtc");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Warning"), "dtc did not flag the dangling phandle:\n{stderr}");
}
