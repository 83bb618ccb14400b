//! Every test machine's blob through dtc, twice: Debian 12's dtc 1.6 (package
//! device-tree-compiler) and dtc 1.8 (build/tools/bin/dtc-1.8, from resources/tools/install-dtc.sh),
//! both installed by resources/setup.sh; 1.8 has checks 1.6 lacks (interrupt_provider,
//! interrupt_map, ...). With each, `dtc -I dtb -O dts` must read the blob without a single
//! warning (dtc runs all its checks on its input, phandle references and their cell counts
//! included), the DTS it prints must compile back to the same tree, and the crate's own DTS
//! rendering ([`dmavm_fdt::to_dts`]) must compile to the same tree without a single warning.
//!
//! dtc prints phandles as bare numbers, and compiling such source warns "cell N is not a
//! phandle reference" for each one in `clocks`, `iommus` and the like (its checks want `&label`
//! references in source). Those warnings, and only those, are allowed when dtc's own output is
//! recompiled; the crate's rendering writes labels and must be clean. A missing dtc, or one of
//! another version than expected, fails the test: it must not pass without having checked.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build_tools, machines, work_dir};
use dmavm_fdt::{build, parse, to_dts};

/// One dtc to check with.
struct Dtc {
    /// "1.6" or "1.8".
    name: &'static str,
    program: PathBuf,
    /// What `dtc --version` must say.
    version: &'static str,
    /// Where it comes from, for messages.
    install: &'static str,
}

/// Both dtcs, each checked to be the version it stands for.
fn dtcs() -> [Dtc; 2] {
    let dtcs = [
        Dtc {
            name: "1.6",
            program: PathBuf::from("/usr/bin/dtc"),
            version: "Version: DTC 1.6.",
            install: "Debian 12's device-tree-compiler (resources/setup.sh installs it)",
        },
        Dtc {
            name: "1.8",
            program: build_tools().join("bin/dtc-1.8"),
            version: "Version: DTC 1.8.",
            install: "resources/tools/install-dtc.sh (resources/setup.sh runs it)",
        },
    ];
    for d in &dtcs {
        let out = match Command::new(&d.program).arg("--version").output() {
            Ok(out) => out,
            Err(e) => panic!(
                "cannot run {} ({e}): install {}; this test checks every generated device tree \
                 with it and must not be skipped",
                d.program.display(),
                d.install
            ),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(d.version), "{} is not {:?}: {text}", d.program.display(), d.version);
    }
    dtcs
}

impl Dtc {
    /// Runs `dtc args...`; returns its stdout, failing on a non-zero exit or any stderr output
    /// (dtc prints its warnings there).
    fn run(&self, args: &[&str]) -> String {
        self.run_allowing(args, |_| false)
    }

    /// As [`Dtc::run`], but stderr lines for which `allowed` is true are not failures.
    fn run_allowing(&self, args: &[&str], allowed: fn(&str) -> bool) -> String {
        let output = Command::new(&self.program).args(args).output().expect("run dtc");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let who = format!("dtc {}", self.name);
        assert!(output.status.success(), "{who}: dtc {args:?} failed ({}):\n{stderr}", output.status);
        let unexpected: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !allowed(l)).collect();
        assert!(unexpected.is_empty(), "{who}: dtc {args:?} warned:\n{stderr}");
        String::from_utf8(output.stdout).expect("dtc output is UTF-8")
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn dtc_reads_every_tree_without_warnings_and_round_trips_it() {
    let dtcs = dtcs();
    let dir = work_dir("dtc");
    for ((name, m), dtc) in machines().into_iter().flat_map(|m| dtcs.iter().map(move |d| (m.clone(), d))) {
        let name = format!("{name}-dtc-{}", dtc.name);
        let blob = build(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tree = parse(&blob).unwrap();
        let dtb = dir.join(format!("{name}.dtb"));
        fs::write(&dtb, &blob).unwrap();

        // dtb -> dts -> dtb with dtc alone.
        let dts = dir.join(format!("{name}.dtc.dts"));
        dtc.run(&["-I", "dtb", "-O", "dts", "-o", path(&dts), path(&dtb)]);
        let again = dir.join(format!("{name}.dtc.dtb"));
        dtc.run_allowing(&["-I", "dts", "-O", "dtb", "-o", path(&again), path(&dts)], |l| {
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
        dtc.run(&["-I", "dts", "-O", "dtb", "-o", path(&compiled), path(&ours)]);
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
    for dtc in dtcs() {
        let output = Command::new(&dtc.program)
            .args(["-I", "dtb", "-O", "dts", path(&dtb)])
            .output()
            .expect("run dtc");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Warning"), "dtc {}: dangling phandle not flagged:\n{stderr}", dtc.name);
    }
}
