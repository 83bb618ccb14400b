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
use crate::options::{
    bridge_from_pairs, iommu_from_pairs, parse_cpus, BridgeOptions, DeviceOptions, IommuOptions, OptionError,
    Pairs,
};
use crate::size::parse_size;

/// The top-level scalar keys; the tables are the registered device types'
/// (`[[disk]]`, ...) and [`OTHER_TABLES`].
const KEYS: &[&str] = &["cpus", "memory", "kernel", "initrd", "cmdline"];
/// The tables that are not virtio devices of the registry.
const OTHER_TABLES: &[&str] = &["iommu", "pci-bridge"];

/// A config file that cannot be used, as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {file}: {source}")]
    Read {
        /// The file as given.
        file: String,
        /// Why.
        source: std::io::Error,
    },
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
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<Item>>()? {
                    items.push(entry);
                }
                Ok(Document(items))
            }
        }
        deserializer.deserialize_map(DocumentVisitor)
    }
}

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
        (Some(id), _) => format!("{kind} '{id}'"),
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
            return Err(source.error(
                key.span().start,
                format!("{name}: {}: expected a string, a boolean or an integer", key.get_ref()),
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
            format!("{k}: expected [[{k}]] tables, one per device", k = key.get_ref()),
        )),
    }
}

fn table<'a>(source: &Source<'_>, key: &Spanned<String>, item: &'a Item) -> Result<&'a Keys, ConfigError> {
    match item {
        Item::Table(t) => Ok(t),
        _ => Err(source.error(key.span().start, format!("{k}: expected a [{k}] table", k = key.get_ref()))),
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
    text.ok_or_else(|| source.error(key.span().start, format!("{}: expected {what}", key.get_ref())))
}

/// Parses config file text; `name` is how errors call the file, `folder`
/// what relative paths are relative to.
pub fn parse(text: &str, name: &str, folder: &Path) -> Result<FileConfig, ConfigError> {
    let source = Source { name: name.to_string(), text, folder: folder.to_path_buf() };
    let document: Document = toml::from_str(text).map_err(|e| {
        let message =
            e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        source.error(e.span().map_or(0, |s| s.start), format!("not valid TOML: {message}"))
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
                    return Err(
                        source.error(at, format!("unknown key '{other}' (known: {})", known.join(", ")))
                    );
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
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: name.clone(), source })?;
    let folder = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    parse(&text, &name, &folder)
}
