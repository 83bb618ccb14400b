//! `key=value,...` device options of the command line (`--disk`, `--rng`,
//! `--console`), in the style of QEMU and Cloud Hypervisor.

use std::path::PathBuf;

/// How a virtio device is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// virtio-mmio, declared in ACPI as `LNRO0005`.
    Mmio,
    /// virtio-pci behind the PCI host bridge.
    Pci,
}

/// Options every virtio device takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Stable name used by `describe` and in messages; generated when absent.
    pub id: Option<String>,
    /// Transport.
    pub transport: Transport,
    /// Declared DMA coherency (`_CCA` / `dma-coherent`).
    pub coherent: bool,
    /// Bypass the IOMMU and use guest-physical addresses (`on`), or honour
    /// it (`off`, the default: offer `VIRTIO_F_ACCESS_PLATFORM` and, with
    /// an IOMMU, translate every access).
    pub direct_ram_access: bool,
}

/// `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// Common options.
    pub common: Common,
    /// Backing file (raw).
    pub path: PathBuf,
    /// Whether the guest may write.
    pub readonly: bool,
}

/// `--rng` or `--console`: nothing beyond the common options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleOptions {
    /// Common options.
    pub common: Common,
}

const COMMON_KEYS: &[&str] = &["id", "transport", "coherent", "direct-ram-access"];

/// `key=value` pairs borrowed from the option text.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// Splits `text` into pairs, checking every key against `known`.
fn pairs<'a>(text: &'a str, known: &[&str]) -> Result<Pairs<'a>, String> {
    let mut out: Pairs<'a> = Vec::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| format!("'{item}' is not key=value"))?;
        if !known.contains(&key) {
            return Err(format!("unknown key '{key}' (known: {})", known.join(", ")));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key '{key}' given twice"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn on_off(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{key}={value}: expected on or off")),
    }
}

fn id(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("id={value}: use 1-32 letters, digits, '-' or '_'"))
    }
}

/// Parses the common keys; returns the other pairs.
fn common(pairs: Pairs<'_>) -> Result<(Common, Pairs<'_>), String> {
    let mut c = Common { id: None, transport: Transport::Mmio, coherent: true, direct_ram_access: false };
    let mut rest = Vec::new();
    for (key, value) in pairs {
        match key {
            "id" => c.id = Some(id(value)?),
            "transport" => {
                c.transport = match value {
                    "mmio" => Transport::Mmio,
                    "pci" => Transport::Pci,
                    _ => return Err(format!("transport={value}: expected mmio or pci")),
                }
            }
            "coherent" => c.coherent = on_off(key, value)?,
            "direct-ram-access" => c.direct_ram_access = on_off(key, value)?,
            _ => rest.push((key, value)),
        }
    }
    Ok((c, rest))
}

/// Parses `--disk path=FILE[,readonly=on|off][,id=..][,transport=..][,coherent=..]`.
pub fn parse_disk(text: &str) -> Result<DiskOptions, String> {
    let known: Vec<&str> = ["path", "readonly"].iter().chain(COMMON_KEYS).copied().collect();
    let (common, rest) = common(pairs(text, &known)?)?;
    let (mut path, mut readonly) = (None, false);
    for (key, value) in rest {
        match key {
            "path" if !value.is_empty() => path = Some(PathBuf::from(value)),
            "path" => return Err("path= is empty".into()),
            _ => readonly = on_off(key, value)?,
        }
    }
    let path = path.ok_or("path=FILE is required")?;
    Ok(DiskOptions { common, path, readonly })
}

/// Parses `--rng` / `--console` options (`id`, `transport`, `coherent`,
/// `direct-ram-access`).
pub fn parse_simple(text: &str) -> Result<SimpleOptions, String> {
    let (common, _) = common(pairs(text, COMMON_KEYS)?)?;
    Ok(SimpleOptions { common })
}

/// `--iommu`: the virtio-iommu device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuOptions {
    /// Stable name (default `iommu0`).
    pub id: Option<String>,
    /// Transport (default pci).
    pub transport: Transport,
}

/// Parses `--iommu [transport=pci|mmio][,id=NAME]`. The IOMMU itself is
/// never translated, and its coherency follows its transport's rules, so
/// only these two keys exist.
pub fn parse_iommu(text: &str) -> Result<IommuOptions, String> {
    let (common, _) = common(pairs(text, &["id", "transport"])?)?;
    let transport = if text.contains("transport=") { common.transport } else { Transport::Pci };
    Ok(IommuOptions { id: common.id, transport })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_with_every_key() {
        let d = parse_disk("path=/tmp/d.img,transport=pci,readonly=on,coherent=off,id=boot").unwrap();
        assert_eq!(d.path, PathBuf::from("/tmp/d.img"));
        assert!(d.readonly);
        assert_eq!(
            d.common,
            Common {
                id: Some("boot".into()),
                transport: Transport::Pci,
                coherent: false,
                direct_ram_access: false
            }
        );
        assert!(parse_simple("direct-ram-access=on").unwrap().common.direct_ram_access);
    }

    #[test]
    fn defaults() {
        let d = parse_disk("path=x").unwrap();
        assert!(!d.readonly);
        assert_eq!(
            d.common,
            Common { id: None, transport: Transport::Mmio, coherent: true, direct_ram_access: false }
        );
        assert_eq!(parse_iommu("").unwrap().transport, Transport::Pci);
        assert_eq!(parse_iommu("transport=mmio").unwrap().transport, Transport::Mmio);
        assert!(parse_iommu("coherent=off").unwrap_err().contains("unknown key 'coherent'"));
        assert_eq!(parse_simple("").unwrap().common.transport, Transport::Mmio);
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, needle) in [
            ("path=x,color=red", "unknown key 'color'"),
            ("path=x,transport=usb", "transport=usb: expected mmio or pci"),
            ("readonly=on", "path=FILE is required"),
            ("path=x,readonly=maybe", "readonly=maybe: expected on or off"),
            ("path=x,path=y", "key 'path' given twice"),
            ("path", "'path' is not key=value"),
            ("path=x,id=a b", "id=a b"),
            ("path=", "path= is empty"),
        ] {
            let err = parse_disk(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(parse_simple("path=x").unwrap_err().contains("unknown key 'path'"));
    }
}
