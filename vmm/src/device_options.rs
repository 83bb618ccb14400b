//! `key=value,...` device options of the command line (`--disk`, `--rng`,
//! `--console`, `--iommu`, `--pci-bridge`), in the style of QEMU and Cloud
//! Hypervisor. Parsing only: a key the user left out stays `None` where its
//! default depends on the machine (a PCI device's coherency and IOMMU
//! scope follow its host bridge), and the machine model resolves it.

use std::path::PathBuf;

use dmavm_iommu::MixedCoherency;

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
    /// Declared DMA coherency (`_CCA` / `dma-coherent`); `None`: not given
    /// (on for virtio-mmio, the host bridge's on PCI).
    pub coherent: Option<bool>,
    /// Bypass the IOMMU and use guest-physical addresses (`on`), or honour
    /// it (`off`: offer `VIRTIO_F_ACCESS_PLATFORM` and, with an IOMMU,
    /// translate every access); `None`: not given (off for virtio-mmio,
    /// the host bridge's on PCI).
    pub direct_ram_access: Option<bool>,
    /// The PCI host bridge (`--pci-bridge id=NAME`) a PCI device sits on;
    /// `None`: the first, `pci0`.
    pub bridge: Option<String>,
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

const COMMON_KEYS: &[&str] = &["id", "transport", "coherent", "direct-ram-access", "bridge"];

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

/// A name (`id=`, `bridge=`): 1-32 letters, digits, '-' or '_'.
fn id(key: &str, value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("{key}={value}: use 1-32 letters, digits, '-' or '_'"))
    }
}

/// Parses the common keys; returns the other pairs.
fn common(pairs: Pairs<'_>) -> Result<(Common, Pairs<'_>), String> {
    let mut c = Common {
        id: None,
        transport: Transport::Mmio,
        coherent: None,
        direct_ram_access: None,
        bridge: None,
    };
    let mut rest = Vec::new();
    for (key, value) in pairs {
        match key {
            "id" => c.id = Some(id(key, value)?),
            "transport" => {
                c.transport = match value {
                    "mmio" => Transport::Mmio,
                    "pci" => Transport::Pci,
                    _ => return Err(format!("transport={value}: expected mmio or pci")),
                }
            }
            "coherent" => c.coherent = Some(on_off(key, value)?),
            "direct-ram-access" => c.direct_ram_access = Some(on_off(key, value)?),
            "bridge" => c.bridge = Some(id(key, value)?),
            _ => rest.push((key, value)),
        }
    }
    Ok((c, rest))
}

/// Parses `--disk path=FILE[,readonly=on|off][,id=..][,transport=..][,coherent=..][,direct-ram-access=..][,bridge=..]`.
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
/// `direct-ram-access`, `bridge`).
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
    /// Its PCI host bridge (default the first).
    pub bridge: Option<String>,
    /// Whether a translated domain may hold endpoints of different declared
    /// coherency (default allow).
    pub mixed_coherency: MixedCoherency,
}

/// Parses `--iommu [transport=pci|mmio][,id=NAME][,bridge=NAME]
/// [,mixed-coherency=allow|reject]`. The IOMMU itself is never translated,
/// and its coherency follows its transport's rules, so only these keys
/// exist.
pub fn parse_iommu(text: &str) -> Result<IommuOptions, String> {
    let (common, rest) = common(pairs(text, &["id", "transport", "bridge", "mixed-coherency"])?)?;
    let transport = if text.contains("transport=") { common.transport } else { Transport::Pci };
    let mut mixed_coherency = MixedCoherency::Allow;
    for (key, value) in rest {
        mixed_coherency = match value {
            "allow" => MixedCoherency::Allow,
            "reject" => MixedCoherency::Reject,
            _ => return Err(format!("{key}={value}: expected allow or reject")),
        };
    }
    Ok(IommuOptions { id: common.id, transport, bridge: common.bridge, mixed_coherency })
}

/// The name of the host bridge every machine has, on segment 0.
pub const DEFAULT_BRIDGE: &str = "pci0";

/// `--pci-bridge`: a PCI host bridge, each on its own PCI segment (or,
/// with `id=pci0`, the properties of the default one on segment 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// Its name, which devices give as `bridge=NAME`.
    pub id: String,
    /// Declared DMA coherency of everything below it (`_CCA` on the root).
    pub coherent: bool,
    /// Whether everything below it bypasses the IOMMU by default.
    pub direct_ram_access: bool,
    /// Reserved for hot-plug: the IOMMU scope must be uniform over the
    /// bridge (no per-device bypass inside a translated one).
    pub hotplug: bool,
}

/// Parses `--pci-bridge id=NAME[,coherent=on|off][,direct-ram-access=on|off][,hotplug=on|off]`.
pub fn parse_bridge(text: &str) -> Result<BridgeOptions, String> {
    let mut b = BridgeOptions { id: String::new(), coherent: true, direct_ram_access: false, hotplug: false };
    let mut named = false;
    for (key, value) in pairs(text, &["id", "coherent", "direct-ram-access", "hotplug"])? {
        match key {
            "id" => {
                b.id = id(key, value)?;
                named = true;
            }
            "coherent" => b.coherent = on_off(key, value)?,
            "direct-ram-access" => b.direct_ram_access = on_off(key, value)?,
            _ => b.hotplug = on_off(key, value)?,
        }
    }
    if !named {
        return Err(format!(
            "id=NAME is required ({DEFAULT_BRIDGE} sets the default bridge's properties; any other name adds a \
             bridge on the next PCI segment)"
        ));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_with_every_key() {
        let d =
            parse_disk("path=/tmp/d.img,transport=pci,readonly=on,coherent=off,id=boot,bridge=fast").unwrap();
        assert_eq!(d.path, PathBuf::from("/tmp/d.img"));
        assert!(d.readonly);
        assert_eq!(
            d.common,
            Common {
                id: Some("boot".into()),
                transport: Transport::Pci,
                coherent: Some(false),
                direct_ram_access: None,
                bridge: Some("fast".into()),
            }
        );
        assert_eq!(parse_simple("direct-ram-access=on").unwrap().common.direct_ram_access, Some(true));
        assert_eq!(parse_simple("direct-ram-access=off").unwrap().common.direct_ram_access, Some(false));
    }

    #[test]
    fn defaults() {
        let d = parse_disk("path=x").unwrap();
        assert!(!d.readonly);
        // What the user left out stays unset: the machine model resolves it.
        assert_eq!(
            d.common,
            Common {
                id: None,
                transport: Transport::Mmio,
                coherent: None,
                direct_ram_access: None,
                bridge: None
            }
        );
        assert_eq!(parse_iommu("").unwrap().transport, Transport::Pci);
        assert_eq!(parse_iommu("transport=mmio").unwrap().transport, Transport::Mmio);
        assert_eq!(parse_iommu("bridge=b1").unwrap().bridge.as_deref(), Some("b1"));
        assert!(parse_iommu("coherent=off").unwrap_err().contains("unknown key 'coherent'"));
        assert_eq!(parse_iommu("").unwrap().mixed_coherency, MixedCoherency::Allow);
        assert_eq!(parse_iommu("mixed-coherency=reject").unwrap().mixed_coherency, MixedCoherency::Reject);
        assert_eq!(
            parse_iommu("mixed-coherency=maybe").unwrap_err(),
            "mixed-coherency=maybe: expected allow or reject"
        );
        assert_eq!(parse_simple("").unwrap().common.transport, Transport::Mmio);
    }

    #[test]
    fn bridges() {
        assert_eq!(
            parse_bridge("id=fast").unwrap(),
            BridgeOptions { id: "fast".into(), coherent: true, direct_ram_access: false, hotplug: false }
        );
        assert_eq!(
            parse_bridge("id=pci0,coherent=off,direct-ram-access=on,hotplug=on").unwrap(),
            BridgeOptions { id: "pci0".into(), coherent: false, direct_ram_access: true, hotplug: true }
        );
        for (text, needle) in [
            ("coherent=off", "id=NAME is required"),
            ("", "id=NAME is required"),
            ("id=a,transport=pci", "unknown key 'transport'"),
            ("id=a,hotplug=maybe", "hotplug=maybe: expected on or off"),
            ("id=a b", "id=a b: use 1-32"),
        ] {
            let err = parse_bridge(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
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
            ("path=x,bridge=", "bridge=: use 1-32"),
            ("path=", "path= is empty"),
        ] {
            let err = parse_disk(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(parse_simple("path=x").unwrap_err().contains("unknown key 'path'"));
    }
}
