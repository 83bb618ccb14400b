//! `--config FILE`: the machine in a TOML file, parsed into the same
//! options the command line gives (the command line's own parser merges
//! its options over them).
//!
//! Every option has a file form with the same keys and values: top-level
//! `cpus`, `memory`, `kernel`, `initrd`, `cmdline`; one `[[disk]]`,
//! `[[rng]]` or `[[pci-bridge]]` table per device or bridge and one
//! `[console]` and `[iommu]` table, each taking exactly the keys of its
//! option (`--disk path=..,readonly=on` is `[[disk]]` with
//! `path = ".."` and `readonly = true`). Values are TOML strings, booleans
//! (for on/off) or integers (`slot = 3`, `addr = 0xd0001000`, `cpus = 2`,
//! `memory = 1024` in MiB as a bare number is); they are handed to the very
//! parsers of the command-line options, so a key means the same in both.
//! Relative paths are relative to the file's folder.
//!
//! The command line over the file: `--cpus`, `--memory`, `--kernel`,
//! `--initrd`, `--cmdline`, `--console` and `--iommu` replace the file's
//! value (`--payload` replaces the file's kernel, initrd and cmdline);
//! `--disk`, `--rng` and `--pci-bridge` are added after the file's, except
//! that one with the `id=` of a device or bridge of the file replaces that
//! one whole, in its place.
//!
//! Every error names the file, the line and the key, in one line:
//! `machine.toml:12: disk 'data': unknown key 'readonlyy' (known: ...)`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::{Spanned, Value};

use crate::device_types::{device_type, DeviceKind, DEVICE_TYPES};
use crate::input_file::{self, InputError, Purpose};
use crate::options::{
    bridge_from_pairs, iommu_from_pairs, parse_cpus, BridgeOptions, DeviceOptions, IommuOptions, OptionError,
    Pairs,
};
use crate::size::parse_size;
use crate::user_text::{one_line, shown};

/// The top-level scalar keys; the tables are the registered device types'
/// (`[[disk]]`, ...) and [`OTHER_TABLES`].
const KEYS: &[&str] = &["cpus", "memory", "kernel", "initrd", "cmdline"];
/// The tables that are not virtio devices of the registry.
const OTHER_TABLES: &[&str] = &["iommu", "pci-bridge"];

/// A config file that cannot be used, as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read, or is not a file dmavm reads.
    #[error("{0}")]
    Read(#[from] InputError),
    /// Something in it is wrong.
    #[error("{file}:{line}: {message}")]
    At {
        /// The file as given.
        file: String,
        /// 1-based line of the key (or table) at fault.
        line: usize,
        /// What and why, naming the device and key.
        message: String,
    },
}

/// What a config file describes, parsed with the options' own parsers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `cpus`.
    pub cpus: Option<u32>,
    /// `memory`, in bytes.
    pub memory: Option<u64>,
    /// `kernel`, resolved against the file's folder.
    pub kernel: Option<PathBuf>,
    /// `initrd`, resolved likewise.
    pub initrd: Option<PathBuf>,
    /// `cmdline`.
    pub cmdline: Option<String>,
    /// The virtio devices, one table each (`[[disk]]`, `[[rng]]`,
    /// `[console]`: every type of [`DEVICE_TYPES`]), paths resolved, each
    /// type's in file order.
    pub devices: Vec<DeviceOptions>,
    /// `[iommu]`.
    pub iommu: Option<IommuOptions>,
    /// `[[pci-bridge]]` tables.
    pub bridges: Vec<BridgeOptions>,
}

/// The keys of one table, in file order, each with its place.
struct Keys(Vec<(Spanned<String>, Spanned<Value>)>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<Value>>()? {
                    keys.push(entry);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// A top-level value: a scalar, a table (`[iommu]`) or an array of tables
/// (`[[disk]]`), the tables' keys with their places.
enum Item {
    Scalar(Value),
    Table(Keys),
    Tables(Vec<Spanned<Keys>>),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, a table or an array of tables")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Item, E> {
                Ok(Item::Scalar(Value::Boolean(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
                Ok(Item::Scalar(Value::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
                i64::try_from(v).map(|v| Item::Scalar(Value::Integer(v))).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Item, E> {
                Ok(Item::Scalar(Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Scalar(Value::String(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut keys = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<Value>>()? {
                    keys.push(entry);
                }
                Ok(Item::Table(Keys(keys)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                let mut tables = Vec::new();
                while let Some(table) = seq.next_element::<Spanned<Keys>>()? {
                    tables.push(table);
                }
                Ok(Item::Tables(tables))
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// The whole file: its top-level keys in file order.
struct Document(Vec<(Spanned<String>, Spanned<Item>)>);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentVisitor;
        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = Document;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut items = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    // toml hands a date to a visitor as a map with a private
                    // key, which a top-level value's visitor cannot take:
                    // say that a date is not a value of this file instead.
                    let item = map.next_value::<Spanned<Item>>().map_err(|e| {
                        if e.to_string().contains(TOML_DATE_KEY) {
                            de::Error::custom(format!("{DATE_ERROR}{} {}", key.span().start, key.get_ref()))
                        } else {
                            e
                        }
                    })?;
                    items.push((key, item));
                }
                Ok(Document(items))
            }
        }
        deserializer.deserialize_map(DocumentVisitor)
    }
}

/// The key toml gives a date's map, which names it in its errors.
const TOML_DATE_KEY: &str = "$__toml_private_datetime";
/// How the document's reader tells [`parse`] which key held a date, and
/// where (`date value of key OFFSET KEY`): toml drops the span of a
/// custom error.
const DATE_ERROR: &str = "date value of key ";

/// Turns byte offsets into line numbers and messages into errors.
struct Source<'a> {
    name: String,
    text: &'a str,
    folder: PathBuf,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// The line of the `[table]` or `[[table]]` header at or above
    /// `offset` (toml's span of a table may start at its header or at its
    /// first key).
    fn header_line(&self, offset: usize) -> usize {
        let line = self.line(offset);
        let headers =
            self.text.lines().take(line).enumerate().filter(|(_, l)| l.trim_start().starts_with('['));
        headers.last().map_or(line, |(i, _)| i + 1)
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::At { file: self.name.clone(), line: self.line(offset), message: message.into() }
    }

    fn path(&self, value: &str) -> PathBuf {
        // A relative path means the same wherever dmavm is started from.
        let path = Path::new(value);
        if path.is_relative() {
            self.folder.join(path)
        } else {
            path.to_path_buf()
        }
    }
}

/// A TOML value as option text: what the command line would say.
fn option_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// How one table is called in messages: `disk 'data'`, or `disk #2` (the
/// second `[[disk]]`) when it has no id.
fn label(kind: &str, keys: &Keys, index: Option<usize>) -> String {
    let id = keys.0.iter().find(|(k, _)| k.get_ref() == "id").and_then(|(_, v)| option_text(v.get_ref()));
    match (id, index) {
        (Some(id), _) => format!("{kind} '{}'", shown(&id)),
        (None, Some(i)) => format!("{kind} #{}", i + 1),
        (None, None) => kind.to_string(),
    }
}

/// Parses one device table (`keys`, whose header is at `table_at`) with
/// `parse`, the option's own pair parser.
fn device<T>(
    source: &Source<'_>,
    kind: &str,
    keys: &Keys,
    table_at: usize,
    index: Option<usize>,
    parse: impl FnOnce(Pairs<'_>) -> Result<T, OptionError>,
) -> Result<T, ConfigError> {
    let name = label(kind, keys, index);
    let mut texts: Vec<(&str, String)> = Vec::new();
    for (key, value) in &keys.0 {
        let Some(text) = option_text(value.get_ref()) else {
            let dates =
                if matches!(value.get_ref(), Value::Datetime(_)) { "dates are not valid here; " } else { "" };
            return Err(source.error(
                key.span().start,
                format!(
                    "{name}: {}: {dates}expected a string, a boolean or an integer",
                    shown(key.get_ref())
                ),
            ));
        };
        texts.push((key.get_ref(), text));
    }
    let pairs: Pairs<'_> = texts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    parse(pairs).map_err(|e| {
        let line = match e.key.as_deref().and_then(|k| keys.0.iter().find(|(key, _)| key.get_ref() == k)) {
            Some((key, _)) => source.line(key.span().start),
            None => source.header_line(table_at),
        };
        ConfigError::At { file: source.name.clone(), line, message: format!("{name}: {}", e.message) }
    })
}

fn tables<'a>(
    source: &Source<'_>,
    key: &Spanned<String>,
    item: &'a Item,
) -> Result<&'a [Spanned<Keys>], ConfigError> {
    match item {
        Item::Tables(t) => Ok(t),
        _ => Err(source.error(
            key.span().start,
            format!("{k}: expected [[{k}]] tables, one per device", k = shown(key.get_ref())),
        )),
    }
}

fn table<'a>(source: &Source<'_>, key: &Spanned<String>, item: &'a Item) -> Result<&'a Keys, ConfigError> {
    match item {
        Item::Table(t) => Ok(t),
        _ => {
            Err(source
                .error(key.span().start, format!("{k}: expected a [{k}] table", k = shown(key.get_ref()))))
        }
    }
}

fn scalar(
    source: &Source<'_>,
    key: &Spanned<String>,
    item: &Item,
    what: &str,
) -> Result<String, ConfigError> {
    let text = match item {
        Item::Scalar(Value::String(s)) => Some(s.clone()),
        Item::Scalar(v @ Value::Integer(_)) if what.contains("integer") => option_text(v),
        _ => None,
    };
    text.ok_or_else(|| source.error(key.span().start, format!("{}: expected {what}", shown(key.get_ref()))))
}

/// Parses config file text; `name` is how errors call the file, `folder`
/// what relative paths are relative to.
pub fn parse(text: &str, name: &str, folder: &Path) -> Result<FileConfig, ConfigError> {
    let source = Source { name: name.to_string(), text, folder: folder.to_path_buf() };
    let document: Document = toml::from_str(text).map_err(|e| {
        let message =
            e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        let at = e.span().map_or(0, |s| s.start);
        let date = message.strip_prefix(DATE_ERROR).and_then(|rest| rest.split_once(' '));
        match date.and_then(|(offset, key)| Some((offset.parse::<usize>().ok()?, key))) {
            Some((offset, key)) => source.error(offset, format!("{}: dates are not valid here", shown(key))),
            None => source.error(at, format!("not valid TOML: {}", one_line(&message, 160))),
        }
    })?;
    let mut config = FileConfig::default();
    for (key, item) in &document.0 {
        let at = key.span().start;
        let value = item.get_ref();
        match key.get_ref().as_str() {
            "cpus" => {
                let text = scalar(&source, key, value, "an integer")?;
                config.cpus = Some(parse_cpus(&text).map_err(|e| source.error(at, format!("cpus: {e}")))?);
            }
            "memory" => {
                let text = scalar(&source, key, value, "a size such as \"1G\" or an integer (MiB)")?;
                config.memory =
                    Some(parse_size(&text).map_err(|e| source.error(at, format!("memory: {e}")))?);
            }
            "kernel" => config.kernel = Some(source.path(&scalar(&source, key, value, "a path (string)")?)),
            "initrd" => config.initrd = Some(source.path(&scalar(&source, key, value, "a path (string)")?)),
            "cmdline" => config.cmdline = Some(scalar(&source, key, value, "a string")?),
            "pci-bridge" => {
                for (i, t) in tables(&source, key, value)?.iter().enumerate() {
                    config.bridges.push(device(
                        &source,
                        "pci-bridge",
                        t.get_ref(),
                        t.span().start,
                        Some(i),
                        bridge_from_pairs,
                    )?);
                }
            }
            "iommu" => {
                let t = table(&source, key, value)?;
                config.iommu = Some(device(&source, "iommu", t, at, None, iommu_from_pairs)?);
            }
            other => {
                let Some(device_type) = device_type(other) else {
                    let known: Vec<&str> = KEYS
                        .iter()
                        .copied()
                        .chain(DEVICE_TYPES.iter().map(|t| t.option))
                        .chain(OTHER_TABLES.iter().copied())
                        .collect();
                    return Err(source
                        .error(at, format!("unknown key '{}' (known: {})", shown(other), known.join(", "))));
                };
                if device_type.many {
                    for (i, t) in tables(&source, key, value)?.iter().enumerate() {
                        let device =
                            device(&source, other, t.get_ref(), t.span().start, Some(i), device_type.parse)?;
                        config.devices.push(with_paths_resolved(&source, device));
                    }
                } else {
                    let t = table(&source, key, value)?;
                    let device = device(&source, other, t, at, None, device_type.parse)?;
                    config.devices.push(with_paths_resolved(&source, device));
                }
            }
        }
    }
    Ok(config)
}

/// A device's file paths (a disk's image) relative to the config file's
/// folder, as every path of the file is.
fn with_paths_resolved(source: &Source<'_>, mut device: DeviceOptions) -> DeviceOptions {
    if let DeviceKind::Disk { path, .. } = &mut device.kind {
        *path = source.path(&path.to_string_lossy());
    }
    device
}

/// Reads and parses the config file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = shown(&path.display().to_string());
    let text = input_file::read_to_string(path, Purpose::Config)?;
    let folder = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    parse(&text, &name, &folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(text, "m.toml", Path::new("/")).unwrap_err().to_string()
    }

    #[test]
    fn dates_are_named_as_such() {
        assert_eq!(error("cpus = 1\nwhen = 1979-05-27\n"), "m.toml:2: when: dates are not valid here");
        assert_eq!(error("memory = 1979-05-27T07:32:00Z\n"), "m.toml:1: memory: dates are not valid here");
        let err = error("[[disk]]\npath = \"a\"\nid = 1979-05-27\n");
        assert_eq!(
            err,
            "m.toml:3: disk #1: id: dates are not valid here; expected a string, a boolean or an integer"
        );
    }

    #[test]
    fn echoed_text_is_escaped_and_shortened() {
        let err = error("[[disk]]\npath = \"a\"\nid = \"x\\u001b[2Jy\"\n");
        assert!(err.starts_with("m.toml:3: disk 'x\\u{1b}[2Jy': id=x\\u{1b}[2Jy: use 1-32"), "{err}");
        let long = "v".repeat(100_000);
        let err = error(&format!("[[disk]]\npath = \"a\"\nid = \"{long}\"\n"));
        assert!(err.len() < 1000, "{} characters: {}", err.len(), &err[..200]);
        assert_eq!(err.matches("(100000 characters)").count(), 2, "{err}");
        let err = error("\"a\\nb\" = 1\n");
        assert!(err.starts_with("m.toml:1: unknown key 'a\\nb'"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn load_refuses_what_is_not_a_regular_file() {
        let err = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(err, "the config file /dev/zero is a character device: dmavm reads only regular files");
        let err = load(Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
