//! `dmavm describe` through the binary: it needs no KVM, prints one row
//! per host bridge and device in either format, writes the firmware it
//! describes (`--dump-acpi`, `--dtb`, `--dts`) so that the standard tools
//! read it cleanly (dtc for the device tree), and refuses what `run`
//! refuses with the same line.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// A mixed machine: the IOMMU on PCI, a non-coherent second bridge, a
/// translated and a bypassing virtio-mmio device.
const MIXED: &[&str] = &[
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
];

fn dmavm(args: &[&str]) -> Output {
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn describe(args: &[&str]) -> Output {
    // These machines' disk images are never made: describe's warning for
    // each (tests/hostile_inputs.rs) would be all stderr held.
    let line: Vec<&str> = ["describe", "--log-level", "error"].iter().chain(args).copied().collect();
    dmavm(&line)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout of a run that must succeed without a word on stderr.
fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("describe").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn needs_no_kvm_and_prints_a_row_per_bridge_and_device() {
    // The disks are never opened and no KVM device is touched: describe
    // works on a machine without /dev/kvm.
    let out = ok(&describe(MIXED));
    let (table, after) = out.split_once("\n\n").expect("rows, a blank line, findings");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 7, "title and 7 rows:\n{out}");
    // The virtio-iommu's boot bypass, then the findings.
    let (bypass, findings) = after.split_once('\n').unwrap();
    assert!(bypass.starts_with("iommu0: boot-bypass=off: "), "{after}");
    // The warnings `run` would print on stderr, here on stdout.
    let codes: Vec<&str> = findings.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(codes, ["[DMA101]", "[DMA103]", "[DMA104]"], "{findings}");
    assert!(findings.lines().all(|l| l.starts_with("warning: [DMA")), "{findings}");
    for title in
        ["ID", "COHERENT", "DIRECT-RAM-ACCESS", "ENDPOINT", "ACCESS_PLATFORM", "ACPI", "_CCA", "VIOT"]
    {
        assert!(lines[0].contains(title), "{title}: {}", lines[0]);
    }
    let row = |id: &str| -> Vec<&str> {
        let line = lines.iter().find(|l| l.split_whitespace().next() == Some(id)).unwrap();
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()
    };
    assert_eq!(
        row("rng0"),
        [
            "rng0",
            "virtio-rng",
            "pci",
            "0001:00:01.0",
            "MSI-X",
            "off",
            "off",
            "yes",
            "0x10008",
            "yes",
            "\\_SB.PCI1",
            "0",
            "PCI range 1"
        ]
    );
    assert_eq!(
        row("console0")[3..],
        ["0xd0001000", "GSI 6", "on", "on", "no", "-", "no", "\\_SB.VR01", "1", "-"]
    );
    assert_eq!(row("iommu0")[10..], ["\\_SB.PCI0", "1", "virtio-iommu-pci node"]);
    assert!(out.lines().all(|l| l == l.trim_end()), "no trailing spaces");
}

#[test]
fn json_has_the_rows_of_the_table() {
    let json: serde_json::Value =
        serde_json::from_str(&ok(&describe(&[MIXED, &["--format", "json"]].concat())))
            .expect("describe --format json prints JSON");
    let table = ok(&describe(MIXED));
    let devices = json["devices"].as_array().unwrap();
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let table_ids: Vec<&str> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, table_ids);
    let disk1 = devices.iter().find(|d| d["id"] == "disk1").unwrap();
    assert_eq!(disk1["coherent"], true);
    assert_eq!(disk1["endpoint"], 0x2_0000);
    assert_eq!(disk1["acpi"]["path"], "\\_SB.VR00");
    assert_eq!(disk1["acpi"]["cca"], 1);
    let codes: Vec<&str> =
        json["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["DMA101", "DMA103", "DMA104"]);
}

/// Runs dtc, failing on any stderr output (its warnings) and if it is
/// missing: resources/setup.sh installs it (device-tree-compiler), and this
/// test must not pass without having checked.
fn dtc(args: &[&str]) -> String {
    let out = match Command::new("dtc").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("dtc not found: run resources/setup.sh (it installs device-tree-compiler); this test must not be skipped")
        }
        Err(e) => panic!("cannot run dtc: {e}"),
    };
    assert!(out.status.success(), "dtc {args:?} failed: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "dtc {args:?} warned:\n{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_aarch64_device_tree_compiles_back_with_dtc_without_warnings() {
    let dir = work_dir("dtc");
    let initrd = dir.join("initrd.img");
    std::fs::write(&initrd, vec![0u8; 3 << 20]).unwrap();
    let (dtb, dts) = (dir.join("machine.dtb"), dir.join("machine.dts"));
    let (dtb_arg, dts_arg, initrd_arg) =
        (dtb.to_str().unwrap(), dts.to_str().unwrap(), initrd.to_str().unwrap());
    let extra = [
        "--arch",
        "aarch64",
        "--cpus",
        "4",
        "--memory",
        "1G",
        "--cmdline",
        "console=ttyAMA0",
        "--initrd",
        initrd_arg,
        "--dtb",
        dtb_arg,
        "--dts",
        dts_arg,
    ];
    let table = ok(&describe(&[MIXED, &extra].concat()));
    assert!(table.lines().next().unwrap().contains("DT-NODE"), "{table}");

    // dtc reads the blob with all its checks (phandle references and
    // their cells included) and prints not a single warning.
    let source = dtc(&["-I", "dtb", "-O", "dts", dtb_arg]);
    for needle in ["bootargs = \"console=ttyAMA0\"", "linux,initrd-start", "iommu-map", "dma-coherent"] {
        assert!(source.contains(needle), "{needle}:\n{source}");
    }
    // Our DTS compiles to the same blob, also without a warning.
    let again = dir.join("again.dtb");
    dtc(&["-I", "dts", "-O", "dtb", "-o", again.to_str().unwrap(), dts_arg]);
    assert_eq!(
        dtc(&["-I", "dtb", "-O", "dts", again.to_str().unwrap()]),
        source,
        "the DTS of --dts is the tree of --dtb"
    );
}

#[test]
fn an_initrd_not_built_yet_is_left_out_of_chosen_with_a_warning() {
    let dir = work_dir("initrd");
    let missing = dir.join("not-built.cpio.gz");
    let dtb = dir.join("tree.dtb");
    let out = dmavm(&[
        "describe",
        "--arch",
        "aarch64",
        "--initrd",
        missing.to_str().unwrap(),
        "--dtb",
        dtb.to_str().unwrap(),
        "--disk",
        "path=a.img",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read the initrd") && err.contains("/chosen is described without it"),
        "{err}"
    );
    let tree = dmavm_fdt::parse(&std::fs::read(&dtb).unwrap()).unwrap();
    let chosen = tree.root.children.iter().find(|n| n.name == "chosen").expect("a /chosen node");
    assert!(!chosen.has("linux,initrd-start") && !chosen.has("linux,initrd-end"));
    // With the file there, /chosen places it.
    std::fs::write(&missing, vec![0u8; 4096]).unwrap();
    ok(&describe(&[
        "--arch",
        "aarch64",
        "--initrd",
        missing.to_str().unwrap(),
        "--dtb",
        dtb.to_str().unwrap(),
    ]));
    let tree = dmavm_fdt::parse(&std::fs::read(&dtb).unwrap()).unwrap();
    let chosen = tree.root.children.iter().find(|n| n.name == "chosen").expect("a /chosen node");
    assert!(chosen.has("linux,initrd-start") && chosen.has("linux,initrd-end"));
}

#[test]
fn dump_acpi_writes_the_tables_it_describes() {
    let dir = work_dir("acpi");
    let out = ok(&describe(&[MIXED, &["--dump-acpi", dir.to_str().unwrap()]].concat()));
    assert!(out.contains("\\_SB.PCI1"), "{out}");
    for sig in ["RSDP", "XSDT", "FACP", "APIC", "DSDT", "MCFG", "VIOT"] {
        let bytes = std::fs::read(dir.join(format!("{sig}.dat"))).unwrap_or_else(|e| panic!("{sig}: {e}"));
        if sig != "RSDP" {
            assert_eq!(&bytes[..4], sig.as_bytes());
        }
    }
}

#[test]
fn a_configuration_run_refuses_gets_the_same_line() {
    for extra in [
        &["--disk", "path=a.img,transport=pci,bridge=nope"][..],
        &["--memory", "8M"],
        &["--pci-bridge", "id=a", "--pci-bridge", "id=a"],
    ] {
        let run = dmavm(&[&["run", "--payload", "/nonexistent/p.bin"][..], extra].concat());
        for arch in ["x86_64", "aarch64"] {
            let described = describe(&[extra, &["--arch", arch]].concat());
            let err = text(&described.stderr);
            assert_eq!(described.status.code(), Some(1), "{extra:?}: {err}");
            assert!(described.stdout.is_empty(), "{extra:?}: nothing but the error");
            assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
            assert_eq!(err, text(&run.stderr), "{extra:?}: describe and run disagree");
        }
    }
}

#[test]
fn a_machine_run_refuses_is_described_with_every_finding() {
    // DMA002 (a PCI device's coherency is its bridge's) and DMA005 (two
    // devices in one window): run refuses with the first and counts the
    // rest; describe lists both, the rows as far as they can be built, and
    // fails with run's line.
    let extra = [
        "--disk",
        "path=a.img,transport=pci,coherent=off",
        "--disk",
        "path=b.img,addr=0xd0000000",
        "--rng",
        "addr=0xd0000000",
    ];
    let run = dmavm(&[&["run", "--payload", "/nonexistent/p.bin"][..], &extra].concat());
    assert_eq!(run.status.code(), Some(1));
    let dir = work_dir("refused");
    let dump = dir.join("acpi");
    let out = describe(&[&extra[..], &["--dump-acpi", dump.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), text(&run.stderr), "the same line as run");
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("disk0 ")), "{stdout}");
    for code in ["error: [DMA002] disk0: coherent=off", "error: [DMA005] disk1 and rng0"] {
        assert!(stdout.contains(code), "{code}: {stdout}");
    }
    assert!(!dump.exists(), "no firmware is written for a machine run refuses");
}

#[test]
fn firmware_of_the_other_architecture_is_a_usage_error() {
    for (args, needle) in [
        (&["--dtb", "x.dtb"][..], "--dtb and --dts need --arch aarch64"),
        (&["--arch", "x86_64", "--dts", "x.dts"], "--dtb and --dts need --arch aarch64"),
        (&["--arch", "aarch64", "--dump-acpi", "d"], "--dump-acpi needs --arch x86_64"),
        (&["--arch", "riscv64"], "invalid value 'riscv64' for '--arch <ARCH>'"),
        (&["--format", "yaml"], "invalid value 'yaml' for '--format <FORMAT>'"),
    ] {
        let out = describe(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("dmavm: error: ") && err.contains(needle), "{args:?}: {err}");
    }
}

/// docs/coherency.md's examples are `dmavm describe`'s output: every block
/// between `<!-- describe: ARGS -->` and `<!-- end -->` is the output of
/// `dmavm describe ARGS` (split at spaces) in a fenced block, so that the
/// guide never drifts from the program. `DMAVM_UPDATE_DOCS=1` rewrites the
/// blocks instead of comparing them.
#[test]
fn the_guide_examples_are_describe_output() {
    const OPEN: &str = "<!-- describe: ";
    const CLOSE: &str = "<!-- end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/coherency.md");
    let doc = std::fs::read_to_string(&path).expect("reading docs/coherency.md");
    let mut out = String::new();
    let mut rest = doc.as_str();
    let mut examples = 0;
    while let Some(at) = rest.find(OPEN) {
        let line_end = at + rest[at..].find('\n').expect("a marker line");
        let args =
            rest[at + OPEN.len()..line_end].trim_end().strip_suffix("-->").expect("`-->` ends the marker");
        let close =
            line_end + rest[line_end..].find(CLOSE).unwrap_or_else(|| panic!("no {CLOSE} after {args}"));
        let argv: Vec<&str> = args.split_whitespace().collect();
        let result = describe(&argv);
        assert_eq!(result.status.code(), Some(0), "describe {args}: {}", text(&result.stderr));
        let lang = if argv.contains(&"json") { "json" } else { "text" };
        let block = format!("\n```{lang}\n{}```\n", text(&result.stdout));
        let current = &rest[line_end..close];
        if std::env::var_os("DMAVM_UPDATE_DOCS").is_none() {
            assert_eq!(
                current, block,
                "docs/coherency.md: the example of `dmavm describe {args}` differs from the program's output; \
                 run DMAVM_UPDATE_DOCS=1 cargo test -p dmavm --test describe to regenerate it"
            );
        }
        out.push_str(&rest[..line_end]);
        out.push_str(&block);
        out.push_str(CLOSE);
        rest = &rest[close + CLOSE.len()..];
        examples += 1;
    }
    out.push_str(rest);
    assert!(examples >= 3, "docs/coherency.md has {examples} describe examples");
    if std::env::var_os("DMAVM_UPDATE_DOCS").is_some() && out != doc {
        std::fs::write(&path, out).expect("rewriting docs/coherency.md");
    }
}
