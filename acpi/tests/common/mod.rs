//! What the iasl test binaries share: finding and running iasl, disassembling and recompiling
//! tables cleanly, and reading fields out of disassemblies.

// Not every test binary uses every helper.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dmavm_acpi::{AcpiTables, Blob};

/// Length of the common table header; the creator ID/revision in it (bytes 28..36) are rewritten
/// by iasl when it recompiles, and the checksum (byte 9) follows from them.
pub const HEADER_LEN: usize = 36;

/// A fresh directory for the files of test `name` (tests run in parallel, so one each).
pub fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmavm-acpi-iasl").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove old iasl work dir");
    }
    fs::create_dir_all(&dir).expect("create iasl work dir");
    dir
}

/// The iasl to use: the recent one resources/tools/install-iasl.sh puts in build/tools (run by
/// resources/setup.sh: Debian 12's own iasl predates the VIOT), else whatever `iasl` PATH has.
pub fn iasl_program() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/tools/bin/iasl");
    if local.exists() {
        local
    } else {
        PathBuf::from("iasl")
    }
}

/// Runs `iasl args...` in `dir`, failing clearly if iasl is not installed.
pub fn iasl(dir: &Path, args: &[&str]) -> (Output, String) {
    let output = match Command::new(iasl_program()).args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "iasl not found: run resources/setup.sh (it installs acpica-tools and a recent iasl in \
             build/tools); this test checks the ACPI tables with it and must not be skipped"
        ),
        Err(e) => panic!("cannot run iasl: {e}"),
    };
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, text)
}

/// Collapses runs of spaces, so field lines of a disassembly can be matched without their padding.
pub fn squeeze(text: &str) -> String {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

/// `iasl -d` of one table: clean, and its disassembly (squeezed) returned.
pub fn disassemble(dir: &Path, blob: &Blob) -> String {
    let file = blob.dump_file_name();
    let (output, text) = iasl(dir, &["-d", &file]);
    assert!(output.status.success(), "iasl -d {file} failed ({}):\n{text}", output.status);
    let lower = text.to_lowercase();
    assert!(
        !lower.contains("warning") && !lower.contains("error"),
        "iasl -d {file} reported a problem:\n{text}"
    );
    assert!(
        text.contains("appears to be a valid ACPI table"),
        "iasl did not take {file} as a table:\n{text}"
    );
    let dsl_path = dir.join(format!("{}.dsl", blob.signature_name()));
    let dsl = fs::read_to_string(&dsl_path).unwrap_or_else(|e| panic!("{}: {e}\n{text}", dsl_path.display()));
    // The disassembler flags problems it finds inside the table (bad checksum, truncated or
    // unknown subtables) with "****" in the output file rather than on the console.
    assert!(!dsl.contains("****"), "{} flags a problem:\n{dsl}", dsl_path.display());
    let lower = dsl.to_lowercase();
    assert!(!lower.contains("warning") && !lower.contains("error"), "{}:\n{dsl}", dsl_path.display());
    squeeze(&dsl)
}

/// [`disassemble`] of a data table (not the DSDT, whose AML iasl optimizes), and its
/// disassembly recompiled to the same table but for the creator fields iasl writes as its own
/// (and the checksum that covers them). Returns the squeezed disassembly.
pub fn round_trip(dir: &Path, blob: &Blob) -> String {
    let name = blob.signature_name();
    let dsl = disassemble(dir, blob);
    let aml = compile(dir, &format!("{name}.dsl"));
    assert_eq!(aml.len(), blob.bytes.len(), "{name} recompiled length");
    assert_eq!(aml[..9], blob.bytes[..9], "{name} signature, length, revision");
    assert_eq!(aml[10..28], blob.bytes[10..28], "{name} OEM fields");
    assert_eq!(aml[HEADER_LEN..], blob.bytes[HEADER_LEN..], "{name} body round trip");
    dsl
}

/// Compiles `source` in `dir` with no error, warning or remark, and returns the output bytes.
pub fn compile(dir: &Path, source: &str) -> Vec<u8> {
    let (output, text) = iasl(dir, &[source]);
    assert!(output.status.success(), "iasl {source} failed ({}):\n{text}", output.status);
    assert!(text.contains("0 Errors, 0 Warnings, 0 Remarks"), "iasl {source} was not clean:\n{text}");
    let aml = dir.join(Path::new(source).with_extension("aml"));
    fs::read(&aml).unwrap_or_else(|e| panic!("{}: {e}", aml.display()))
}

pub fn blob<'a>(tables: &'a AcpiTables, signature: &[u8; 4]) -> &'a Blob {
    tables.find(*signature).unwrap_or_else(|| panic!("no {} blob", String::from_utf8_lossy(signature)))
}

/// The values of every `name : value` field line of a (squeezed) data-table disassembly, in order.
pub fn field_values<'a>(dsl: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!("] {name} : ");
    dsl.lines().filter_map(|l| l.find(&key).map(|at| &l[at + key.len()..])).collect()
}

/// The text of `Device (name)` in a (squeezed) DSDT disassembly, up to the next device.
pub fn device<'a>(dsdt: &'a str, name: &str) -> &'a str {
    let start = dsdt.find(&format!("Device ({name})")).unwrap_or_else(|| panic!("no {name}:\n{dsdt}"));
    let end = dsdt[start + 4..].find("Device (").map_or(dsdt.len(), |e| start + 4 + e);
    &dsdt[start..end]
}

pub fn assert_has(dsl: &str, what: &str, needle: &str) {
    assert!(dsl.contains(needle), "{what} disassembly lacks {needle:?}:\n{dsl}");
}

/// Fails clearly if the installed iasl does not know the VIOT (ACPICA added it in 2021; Debian
/// bookworm's acpica-tools 20200925 predates it and only dumps the table as unknown).
pub fn require_viot_support(dir: &Path) {
    let (output, text) = iasl(dir, &["-T", "VIOT"]);
    assert!(
        output.status.success(),
        "this iasl cannot decode a VIOT (ACPICA 2021 or later is needed; Debian bookworm's \
         acpica-tools 20200925 is too old: run resources/tools/install-iasl.sh, which \
         resources/setup.sh does), so the VIOT cannot be checked:\n{text}"
    );
}
