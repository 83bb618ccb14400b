//! The matrix file: named machines, each with the keys of the machine
//! config file, and kernel command-line variants;
//! the runs are their cross product.
//!
//! ```toml
//! cmdline = "iommu.forcedac=1"     # optional: words for every run
//! timeout = "90s"                  # optional: every run's limit
//!
//! [variants]                       # optional: NAME = "words"
//! lazy = ""
//! strict = "iommu.strict=1"
//!
//! [machine.translated-pci]         # a machine: config-file keys ...
//! cpus = 1
//! variants = ["lazy", "strict"]    # ... and which variants (default all;
//!                                  # [] for one run without a variant)
//! [machine.translated-pci.iommu]
//! transport = "pci"
//! [[machine.translated-pci.disk]]
//! transport = "pci"
//! ```
//!
//! Each machine's tables are handed to [`parse_config_file`] as a config
//! file of their own (headers `[machine.NAME.disk]` become `[disk]`), so
//! a key means exactly what it means there and its errors name the
//! matrix's file and line. The harness makes every disk's image (so a
//! disk has no `path`) and every network device's TAP, in a network
//! namespace of the run's own (so a net device has no `tap`), and boots
//! the kernel of `--kernel` (so a machine has no `kernel` or `initrd`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::args::parse_duration;
use dmavm_machine::checks::{check, refusal};
use dmavm_machine::config_file::{parse as parse_config_file, ConfigError, FileConfig};
use dmavm_machine::layout::MIN_MEMORY;
use dmavm_machine::options::MachineOptions;
use dmavm_machine::{Arch, Machine};

/// A machine's memory unless it says: enough for the boot-test check.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// The keys a `[machine.NAME]` table has besides the config file's.
const MATRIX_MACHINE_KEYS: &[&str] = &["variants", "timeout", "test-dt-flip-coherent", "test-net-corrupt"];
/// The matrix's top-level keys.
const TOP_KEYS: &[&str] = &["cmdline", "timeout", "variants", "machine"];
/// Where the placeholder image of a disk points until a run makes one.
const IMAGE_PLACEHOLDER: &str = "/boot-test-image";
/// The placeholder TAP of a network device until a run makes one.
const TAP_PLACEHOLDER: &str = "boot-test-tap";

/// The tables whose one key the harness fills in for each run: the table,
/// the key, its placeholder and why the matrix leaves it out.
const HARNESS_KEYS: &[(&str, &str, &str, &str)] = &[
    ("disk", "path", IMAGE_PLACEHOLDER, "the harness makes each run's disk image itself"),
    (
        "net",
        "tap",
        TAP_PLACEHOLDER,
        "the harness makes each run's TAP itself, in a network namespace of the run's own",
    ),
];

/// A matrix that cannot be used, as one line (`file:line: what`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatrixError(pub String);

/// One run of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// `machine/variant`, or the machine's name without variants.
    pub name: String,
    /// The machine's name.
    pub machine_name: String,
    /// The variant's name.
    pub variant: Option<String>,
    /// The matrix file, as given.
    pub matrix: String,
    /// vCPUs.
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// The machine model (disk paths are placeholders until a run makes
    /// its images).
    pub machine: Machine,
    /// Kernel command-line words of the matrix, the machine and the
    /// variant.
    pub cmdline: String,
    /// The run's time limit, if the matrix sets one.
    pub timeout: Option<Duration>,
    /// Test only: virtio-mmio devices whose device tree lies about their
    /// coherency (`dmavm run --test-dt-flip-coherent`), to prove the
    /// `coherency` check catches it.
    pub dt_flip_coherent: Vec<String>,
    /// Test only: the `net` check's peer flips a byte of the block it
    /// serves, as a path that corrupts data would, to prove the check
    /// catches it.
    pub net_corrupt: bool,
}

/// One line of the matrix as the scanner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    /// Top level, `[variants]` or anything not a machine.
    Other,
    /// `[machine.NAME]` itself.
    MachineTop(String),
    /// `[machine.NAME.TABLE]` / `[[machine.NAME.TABLE]]`.
    MachineTable(String),
}

/// A header's dotted key, unquoted: `[ machine."a b".disk ]` -> machine, a b, disk.
fn header_path(line: &str) -> Option<(bool, Vec<String>)> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(h, _)| if h.trim_end().ends_with(']') { h.trim_end() } else { t });
    let (array, inner) = if let Some(i) = t.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
        (true, i)
    } else {
        (false, t.strip_prefix('[')?.strip_suffix(']')?)
    };
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut cur).trim().to_string()),
            (None, c) => cur.push(c),
        }
    }
    parts.push(cur.trim().to_string());
    Some((array, parts))
}

/// The key of a `key = value` line.
fn line_key(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (key, _) = t.split_once('=')?;
    Some(key.trim().trim_matches(['"', '\'']).to_string())
}

/// How much a line opens (+) or closes (-) arrays and inline tables,
/// outside strings and comments.
fn depth_change(line: &str) -> i32 {
    let mut d = 0;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => break,
            (None, '[' | '{') => d += 1,
            (None, ']' | '}') => d -= 1,
            _ => {}
        }
    }
    d
}

/// The matrix's lines, sorted: for each machine (in file order) the text
/// of its own config file and, per line of that text, the matrix's line;
/// and the matrix line of each key.
struct Scan {
    /// Machines in file order, with the line of their first header.
    machines: Vec<(String, usize)>,
    /// Per machine: (config-file text lines, matrix line of each).
    documents: Vec<Vec<(String, usize)>>,
    /// (section, key) -> line of its `key =`.
    keys: Vec<(Section, String, usize)>,
    /// Keys of [`HARNESS_KEYS`] the matrix gave (not allowed): machine,
    /// index in [`HARNESS_KEYS`], line.
    harness_keys: Vec<(String, usize, usize)>,
}

fn scan(text: &str) -> Scan {
    let mut s =
        Scan { machines: Vec::new(), documents: Vec::new(), keys: Vec::new(), harness_keys: Vec::new() };
    let mut section = Section::Other;
    // The table being read, when it is one of HARNESS_KEYS.
    let mut harness_table: Option<usize> = None;
    let mut skipping = 0; // depth of a matrix-only value being left out
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if skipping > 0 {
            skipping += depth_change(line);
            continue;
        }
        if let Some((array, path)) = header_path(line) {
            harness_table = None;
            section = match path.as_slice() {
                [m, name, rest @ ..] if m == "machine" => {
                    let index = match s.machines.iter().position(|(m, _)| m == name) {
                        Some(i) => i,
                        None => {
                            s.machines.push((name.clone(), n));
                            s.documents.push(Vec::new());
                            s.machines.len() - 1
                        }
                    };
                    if rest.is_empty() {
                        Section::MachineTop(name.clone())
                    } else {
                        let quoted: Vec<String> = rest.iter().map(|p| format!("\"{p}\"")).collect();
                        let header = if array {
                            format!("[[{}]]", quoted.join("."))
                        } else {
                            format!("[{}]", quoted.join("."))
                        };
                        s.documents[index].push((header, n));
                        harness_table = match rest {
                            [table] => HARNESS_KEYS.iter().position(|(t, ..)| t == table),
                            _ => None,
                        };
                        if let Some((_, key, placeholder, _)) = harness_table.map(|i| HARNESS_KEYS[i]) {
                            // Made per run; the parser wants one.
                            s.documents[index].push((format!("{key} = \"{placeholder}\""), n));
                        }
                        Section::MachineTable(name.clone())
                    }
                }
                _ => Section::Other,
            };
            continue;
        }
        let key = line_key(line);
        if let Some(k) = &key {
            s.keys.push((section.clone(), k.clone(), n));
        }
        let machine = match &section {
            Section::MachineTop(m) | Section::MachineTable(m) => m.clone(),
            Section::Other => continue,
        };
        let index = s.machines.iter().position(|(m, _)| *m == machine).unwrap_or(0);
        if matches!(section, Section::MachineTop(_))
            && key.as_deref().is_some_and(|k| MATRIX_MACHINE_KEYS.contains(&k))
        {
            skipping = depth_change(line);
            continue;
        }
        if let Some(i) = harness_table.filter(|&i| key.as_deref() == Some(HARNESS_KEYS[i].1)) {
            s.harness_keys.push((machine, i, n));
            continue;
        }
        if let Some(doc) = s.documents.get_mut(index) {
            doc.push((line.to_string(), n));
        }
    }
    s
}

/// Checks a name (machine or variant) as `id=` values are checked.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses matrix text of x86_64 machines; `file` is how errors and
/// reports call it.
#[cfg(test)]
pub fn parse(text: &str, file: &str) -> Result<Vec<RunSpec>, MatrixError> {
    parse_for(text, file, Arch::X86_64)
}

/// Parses matrix text of `arch` machines; `file` is how errors and
/// reports call it.
pub fn parse_for(text: &str, file: &str, arch: Arch) -> Result<Vec<RunSpec>, MatrixError> {
    let err = |line: usize, msg: String| MatrixError(format!("{file}:{line}: {msg}"));
    let table: Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
        });
        let message =
            e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        err(line, format!("not valid TOML: {message}"))
    })?;
    let s = scan(text);
    let key_line = |section: &Section, key: &str| {
        s.keys.iter().find(|(sec, k, _)| sec == section && k == key).map_or(1, |(_, _, n)| *n)
    };
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            let line = s.keys.iter().find(|(_, k, _)| k == key).map_or(1, |(_, _, n)| *n);
            return Err(err(line, format!("unknown key '{key}' (known: {})", TOP_KEYS.join(", "))));
        }
    }
    let string =
        |section: &Section, t: &Table, key: &str, what: &str| -> Result<Option<String>, MatrixError> {
            match t.get(key) {
                None => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(_) => Err(err(key_line(section, key), format!("{what}{key}: expected a string"))),
            }
        };
    let timeout = |section: &Section, t: &Table, what: &str| -> Result<Option<Duration>, MatrixError> {
        let text = match t.get("timeout") {
            None => return Ok(None),
            Some(Value::String(v)) => v.clone(),
            Some(Value::Integer(i)) => i.to_string(),
            Some(_) => {
                return Err(err(
                    key_line(section, "timeout"),
                    format!("{what}timeout: expected a time such as \"90s\""),
                ))
            }
        };
        parse_duration(&text)
            .map(Some)
            .map_err(|e| err(key_line(section, "timeout"), format!("{what}timeout: {e}")))
    };
    let top = Section::Other;
    let common_cmdline = string(&top, &table, "cmdline", "")?.unwrap_or_default();
    let common_timeout = timeout(&top, &table, "")?;

    // variants, in file order
    let mut variants: Vec<(String, String)> = Vec::new();
    match table.get("variants") {
        None => {}
        Some(Value::Table(v)) => {
            let mut named: Vec<(usize, String, String)> = Vec::new();
            for (name, words) in v {
                let line = key_line(&top, name);
                if !plain_name(name) {
                    return Err(err(line, format!("variant '{name}': use 1-32 letters, digits, '-' or '_'")));
                }
                let Value::String(words) = words else {
                    return Err(err(
                        line,
                        format!("variant '{name}': expected a string of kernel command-line words"),
                    ));
                };
                named.push((line, name.clone(), words.clone()));
            }
            named.sort_by_key(|(line, _, _)| *line);
            variants = named.into_iter().map(|(_, n, w)| (n, w)).collect();
        }
        Some(_) => {
            return Err(err(key_line(&top, "variants"), "variants: expected a [variants] table".into()))
        }
    }

    let machines = match table.get("machine") {
        Some(Value::Table(m)) => m,
        Some(_) => {
            return Err(err(key_line(&top, "machine"), "machine: expected [machine.NAME] tables".into()))
        }
        None => return Err(err(1, "no machines: add at least one [machine.NAME] table".into())),
    };
    if let Some((machine, i, line)) = s.harness_keys.first() {
        let (table, key, _, why) = HARNESS_KEYS[*i];
        return Err(err(*line, format!("machine '{machine}': {table}: {key}: {why}; leave {key} out")));
    }
    let mut runs = Vec::new();
    for ((name, header_line), doc) in s.machines.iter().zip(&s.documents) {
        let Some(Value::Table(mt)) = machines.get(name) else {
            return Err(err(*header_line, format!("machine '{name}': expected a table")));
        };
        if !plain_name(name) {
            return Err(err(*header_line, format!("machine '{name}': use 1-32 letters, digits, '-' or '_'")));
        }
        let what = format!("machine '{name}': ");
        let sec = Section::MachineTop(name.clone());
        let config = machine_config(doc, file, &what)?;
        for key in ["kernel", "initrd"] {
            if mt.contains_key(key) {
                return Err(err(
                    key_line(&sec, key),
                    format!(
                        "{what}{key}: the harness boots --kernel with its own initramfs; leave {key} out"
                    ),
                ));
            }
        }
        let chosen: Vec<&(String, String)> = match mt.get("variants") {
            None => variants.iter().collect(),
            Some(Value::Array(list)) => {
                let line = key_line(&sec, "variants");
                let mut out = Vec::new();
                for v in list {
                    let Value::String(v) = v else {
                        return Err(err(line, format!("{what}variants: expected names of [variants]")));
                    };
                    match variants.iter().find(|(n, _)| n == v) {
                        Some(found) if !out.contains(&found) => out.push(found),
                        Some(_) => return Err(err(line, format!("{what}variants: '{v}' is named twice"))),
                        None => {
                            let known: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
                            return Err(err(
                                line,
                                format!(
                                    "{what}variants: no variant '{v}' (known: {})",
                                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                                ),
                            ));
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(err(
                    key_line(&sec, "variants"),
                    format!("{what}variants: expected a list of names"),
                ))
            }
        };
        let machine_timeout = timeout(&sec, mt, &what)?.or(common_timeout);
        let memory = config.memory.unwrap_or(DEFAULT_MEMORY);
        let options = MachineOptions {
            cpus: config.cpus.unwrap_or(1),
            memory,
            bridges: config.bridges.clone(),
            devices: config.devices.clone(),
            iommu: config.iommu.clone(),
        };
        let machine = Machine::new(&options, arch).map_err(|e| err(*header_line, format!("{what}{e:#}")))?;
        let dt_flip_coherent = match mt.get("test-dt-flip-coherent") {
            None => Vec::new(),
            Some(Value::Array(ids)) if arch == Arch::Aarch64 => {
                let line = key_line(&sec, "test-dt-flip-coherent");
                let mut out = Vec::new();
                for id in ids {
                    let Value::String(id) = id else {
                        return Err(err(line, format!("{what}test-dt-flip-coherent: expected device ids")));
                    };
                    let mmio = machine
                        .devices
                        .iter()
                        .any(|d| d.id == *id && matches!(d.placement, dmavm_machine::Placement::Mmio { .. }));
                    if !mmio {
                        return Err(err(
                            line,
                            format!("{what}test-dt-flip-coherent: '{id}' is not a virtio-mmio device of the machine"),
                        ));
                    }
                    out.push(id.clone());
                }
                out
            }
            Some(_) => {
                return Err(err(
                    key_line(&sec, "test-dt-flip-coherent"),
                    format!("{what}test-dt-flip-coherent: a list of virtio-mmio device ids, on arm64 (--arch aarch64)"),
                ))
            }
        };
        let net_corrupt = match mt.get("test-net-corrupt") {
            None | Some(Value::Boolean(false)) => false,
            Some(Value::Boolean(true)) => {
                if !machine.devices.iter().any(|d| matches!(d.kind, dmavm_machine::DeviceKind::Net { .. })) {
                    return Err(err(
                        key_line(&sec, "test-net-corrupt"),
                        format!("{what}test-net-corrupt: the machine has no net device"),
                    ));
                }
                true
            }
            Some(_) => {
                return Err(err(
                    key_line(&sec, "test-net-corrupt"),
                    format!("{what}test-net-corrupt: expected true or false"),
                ))
            }
        };
        let findings = check(&machine);
        if let Some(line) = refusal(&findings) {
            return Err(err(*header_line, format!("{what}{line}")));
        }
        if memory < MIN_MEMORY || memory % 4096 != 0 {
            return Err(err(
                key_line(&sec, "memory"),
                format!("{what}memory: at least 16 MiB in whole 4 KiB pages"),
            ));
        }
        let words = |extra: &str| {
            [common_cmdline.as_str(), config.cmdline.as_deref().unwrap_or(""), extra]
                .iter()
                .filter(|w| !w.trim().is_empty())
                .map(|w| w.trim())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let base = RunSpec {
            name: name.clone(),
            machine_name: name.clone(),
            variant: None,
            matrix: file.to_string(),
            cpus: config.cpus.unwrap_or(1),
            memory,
            machine,
            cmdline: words(""),
            timeout: machine_timeout,
            dt_flip_coherent,
            net_corrupt,
        };
        if chosen.is_empty() {
            // No variants, or `variants = []`: one run named as the machine.
            runs.push(base);
            continue;
        }
        for (variant, extra) in chosen {
            runs.push(RunSpec {
                name: format!("{name}/{variant}"),
                variant: Some(variant.clone()),
                cmdline: words(extra),
                ..base.clone()
            });
        }
    }
    Ok(runs)
}

/// A machine's tables through the config file's parser, its errors moved
/// to the matrix's lines.
fn machine_config(doc: &[(String, usize)], file: &str, what: &str) -> Result<FileConfig, MatrixError> {
    let text: String = doc.iter().map(|(l, _)| format!("{l}\n")).collect();
    parse_config_file(&text, file, Path::new("/")).map_err(|e| match e {
        ConfigError::At { line, message, .. } => {
            let line = doc.get(line.saturating_sub(1)).map_or(1, |(_, n)| *n);
            MatrixError(format!("{file}:{line}: {what}{message}"))
        }
        other => MatrixError(format!("{file}: {what}{other}")),
    })
}

/// Reads and parses the matrix of x86_64 machines at `path`.
#[cfg(test)]
pub fn load(path: &Path) -> Result<Vec<RunSpec>, MatrixError> {
    load_for(path, Arch::X86_64)
}

/// Reads and parses the matrix of `arch` machines at `path`.
pub fn load_for(path: &Path, arch: Arch) -> Result<Vec<RunSpec>, MatrixError> {
    let name = dmavm_machine::user_text::shown(&path.display().to_string());
    let text = dmavm_machine::input_file::read_to_string(path, dmavm_machine::input_file::Purpose::Matrix)
        .map_err(|e| MatrixError(e.to_string()))?;
    parse_for(&text, &name, arch)
}

/// All runs of `paths`, named uniquely.
pub fn load_all(paths: &[PathBuf], arch: Arch) -> Result<Vec<RunSpec>, MatrixError> {
    let mut runs: Vec<RunSpec> = Vec::new();
    for p in paths {
        for r in load_for(p, arch)? {
            if let Some(other) = runs.iter().find(|o| o.name == r.name) {
                return Err(MatrixError(format!(
                    "{}: run '{}' is also in {}: name machines apart",
                    r.matrix, r.name, other.matrix
                )));
            }
            runs.push(r);
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmavm_machine::{DeviceKind, Placement};

    const GOOD: &str = r#"# a matrix
cmdline = "loglevel=4"

[variants]
lazy = ""
strict = "iommu.strict=1"
passthrough = "iommu.passthrough=1"

[machine.plain]
variants = ["lazy"]
memory = "128M"
[[machine.plain.disk]]
readonly = true
[[machine.plain.rng]]

[machine.pci]
cpus = 2
cmdline = "quiet"
timeout = "90s"
variants = [
  "strict",
  "passthrough",
]
[machine.pci.iommu]
transport = "pci"
[[machine.pci.disk]]
id = "rand"
transport = "pci"
[[machine."pci".pci-bridge]]
id = "fast"
direct-ram-access = true
"#;

    #[test]
    fn a_matrix_must_be_a_regular_file_of_sane_size() {
        let err = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(err, "the matrix /dev/zero is a character device: dmavm reads only regular files");
        let err = load(Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = load(Path::new("/nonexistent.toml")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the matrix /nonexistent.toml: "), "{err}");
    }

    #[test]
    fn the_cross_product_in_file_order() {
        let runs = parse(GOOD, "m.toml").unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["plain/lazy", "pci/strict", "pci/passthrough"]);
        let plain = &runs[0];
        assert_eq!((plain.cpus, plain.memory, plain.timeout), (1, 128 << 20, None));
        assert_eq!(plain.cmdline, "loglevel=4");
        assert!(matches!(plain.machine.devices[0].kind, DeviceKind::Disk { readonly: true, .. }));
        let pci = &runs[2];
        assert_eq!((pci.cpus, pci.memory), (2, DEFAULT_MEMORY));
        assert_eq!(pci.timeout, Some(Duration::from_secs(90)));
        assert_eq!(pci.cmdline, "loglevel=4 quiet iommu.passthrough=1");
        assert_eq!(pci.variant.as_deref(), Some("passthrough"));
        assert_eq!(pci.machine.bridges.len(), 2);
        assert_eq!(pci.machine.devices[1].id, "rand");
        assert_eq!(pci.machine.devices[1].placement, Placement::Pci { segment: 0, slot: 2 });
        assert!(pci.machine.devices[1].dma.endpoint().is_some());
        // Without variants a machine is one run.
        let runs = parse("[machine.a]\n[[machine.a.rng]]\n", "x.toml").unwrap();
        assert_eq!((runs[0].name.as_str(), runs[0].variant.as_deref()), ("a", None));
        let runs = parse("[variants]\nx = \"a=1\"\n[machine.a]\nvariants = []\n", "x.toml").unwrap();
        assert_eq!((runs.len(), runs[0].name.as_str(), runs[0].cmdline.as_str()), (1, "a", ""));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        for (text, needle) in [
            (
                "[machine.a]\n[[machine.a.disk]]\nreadonlyy = true\n",
                "m.toml:3: machine 'a': disk #1: unknown key 'readonlyy'",
            ),
            (
                "[machine.a]\n\n[[machine.a.disk]]\nid = \"d\"\ntransport = \"usb\"\n",
                "m.toml:5: machine 'a': disk 'd': transport=usb: expected mmio or pci",
            ),
            ("[machine.a]\ncpus = 0\n", "m.toml:2: machine 'a': cpus: a VM needs at least 1 vCPU"),
            ("[machine.a]\ncolour = 1\n", "m.toml:2: machine 'a': unknown key 'colour'"),
            (
                "[machine.a]\n[[machine.a.disk]]\npath = \"x.img\"\n",
                "m.toml:3: machine 'a': disk: path: the harness makes each run's disk image",
            ),
            ("[machine.a]\nkernel = \"k\"\n", "m.toml:2: machine 'a': kernel: the harness boots --kernel"),
            (
                "[machine.a]\nvariants = [\"fast\"]\n",
                "m.toml:2: machine 'a': variants: no variant 'fast' (known: none)",
            ),
            (
                "[variants]\nx = \"\"\n[machine.a]\nvariants = [\"x\", \"x\"]\n",
                "m.toml:4: machine 'a': variants: 'x' is named twice",
            ),
            ("[variants]\nx = 1\n[machine.a]\n", "m.toml:2: variant 'x': expected a string"),
            ("[machine.a]\ntimeout = \"soon\"\n", "m.toml:2: machine 'a': timeout: 'soon' is not a time"),
            (
                "colour = 1\n[machine.a]\n",
                "m.toml:1: unknown key 'colour' (known: cmdline, timeout, variants, machine)",
            ),
            ("[variants]\n", "m.toml:1: no machines"),
            ("[machine.a]\ncpus = [\n", "m.toml:2: not valid TOML"),
            (
                "\n\n[machine.a]\n[[machine.a.disk]]\ntransport = \"pci\"\nbridge = \"nope\"\n",
                "m.toml:3: machine 'a': disk0: bridge=nope: no such PCI host bridge",
            ),
            ("[machine.a]\n[machine.a.iommu]\ndirect-ram-access = false\n", "m.toml:1: machine 'a': [DMA"),
            ("[machine.a]\nmemory = \"1M\"\n", "m.toml:2: machine 'a': memory: at least 16 MiB"),
            ("[machine.a]\n[machine.b]\n[machine.\"c d\"]\n", "m.toml:3: machine 'c d': use 1-32 letters"),
        ] {
            let e = parse(text, "m.toml").unwrap_err().0;
            assert!(e.starts_with(needle) || e.contains(needle), "{text:?}:\n  {e}\n  wanted {needle}");
        }
    }

    #[test]
    fn headers_and_keys() {
        assert_eq!(
            header_path("[[ machine.\"a.b\".disk ]]"),
            Some((true, vec!["machine".into(), "a.b".into(), "disk".into()]))
        );
        assert_eq!(header_path("[machine.x] # note"), Some((false, vec!["machine".into(), "x".into()])));
        assert_eq!(header_path("x = [1]"), None);
        assert_eq!(line_key("  \"id\" = \"x\""), Some("id".into()));
        assert_eq!(line_key("# a = b"), None);
        assert_eq!(depth_change("v = [\"a]\", # ]"), 1);
    }

    #[test]
    fn the_arm64_matrices_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let runs = load_for(&root.join("resources/matrix/arm64.toml"), Arch::Aarch64).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["no-iommu", "iommu-mmio", "iommu-pci", "noncoherent-mmio", "bypass", "bridges"]);
        assert!(runs.iter().all(|r| r.machine.arch == Arch::Aarch64 && r.dt_flip_coherent.is_empty()));
        let broken = load_for(&root.join("tests/matrix/arm64-broken.toml"), Arch::Aarch64).unwrap();
        assert_eq!(broken[0].dt_flip_coherent, ["liar"]);
        // The test-only key is for arm64 virtio-mmio devices only.
        let x86 = load(&root.join("tests/matrix/arm64-broken.toml")).unwrap_err().to_string();
        assert!(x86.contains("test-dt-flip-coherent: a list of virtio-mmio device ids, on arm64"), "{x86}");
        let text = "[machine.m]\ntest-dt-flip-coherent = [\"d\"]\n[[machine.m.disk]]\nid = \"d\"\ntransport = \"pci\"\n";
        let pci = parse_for(text, "m.toml", Arch::Aarch64).unwrap_err().to_string();
        assert!(pci.contains("'d' is not a virtio-mmio device"), "{pci}");
    }

    #[test]
    fn net_devices_get_their_tap_from_the_harness() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let runs = load(&root.join("tests/matrix/net.toml")).unwrap();
        let names: Vec<(&str, bool)> = runs.iter().map(|r| (r.name.as_str(), r.net_corrupt)).collect();
        assert_eq!(names, [("net-pci", false), ("net-corrupt", true)]);
        let taps: Vec<(&str, &str)> = runs[0]
            .machine
            .devices
            .iter()
            .filter_map(|d| match &d.kind {
                DeviceKind::Net { tap, .. } => Some((d.id.as_str(), tap.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(taps, [("up", TAP_PLACEHOLDER), ("direct", TAP_PLACEHOLDER)]);
        assert!(
            runs[0].machine.devices[1].dma.endpoint().is_some()
                && runs[0].machine.devices[2].dma.endpoint().is_none()
        );
        for (text, needle) in [
            (
                "[machine.a]\n[[machine.a.net]]\ntap = \"tap0\"\n",
                "m.toml:3: machine 'a': net: tap: the harness makes each run's TAP itself, in a network namespace \
                 of the run's own; leave tap out",
            ),
            (
                "[machine.a]\ntest-net-corrupt = true\n[[machine.a.disk]]\n",
                "m.toml:2: machine 'a': test-net-corrupt: the machine has no net device",
            ),
            (
                "[machine.a]\ntest-net-corrupt = \"yes\"\n[[machine.a.net]]\n",
                "m.toml:2: machine 'a': test-net-corrupt: expected true or false",
            ),
            (
                "[machine.a]\n[[machine.a.net]]\nmac = \"01:00:00:00:00:00\"\n",
                "m.toml:3: machine 'a': net",
            ),
        ] {
            let e = parse(text, "m.toml").unwrap_err().0;
            assert!(e.starts_with(needle), "{text:?}:\n  {e}\n  wanted {needle}");
        }
        // A disk's path is still the harness's, in the same words as ever.
        let e = parse("[machine.a]\n[[machine.a.disk]]\npath = \"x\"\n", "m.toml").unwrap_err().0;
        assert_eq!(e, "m.toml:3: machine 'a': disk: path: the harness makes each run's disk image itself; leave path out");
    }

    #[test]
    fn the_shipped_matrix_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/matrix/default.toml");
        let runs = load(&path).unwrap();
        assert!(runs.len() >= 7, "{}", runs.len());
    }
}
