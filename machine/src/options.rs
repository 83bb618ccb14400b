//! `key=value,...` device options of the command line (`--disk`, `--net`, `--rng`,
//! `--console`, `--iommu`, `--pci-bridge`), in the style of QEMU and Cloud
//! Hypervisor. Parsing only: a key the user left out stays `None` where its
//! default depends on the machine (a PCI device's coherency and IOMMU
//! scope follow its host bridge), and the machine model resolves it.

use std::path::PathBuf;

use crate::device_types::{device_type, DeviceKind};
use crate::mac::MacAddress;
use crate::user_text::shown;

/// The machine as options: vCPUs, memory, host bridges and devices, as
/// the command line and the config file give them (the VM runner's
/// command line and `describe` take exactly these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineOptions {
    /// vCPUs.
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// `--pci-bridge`, in order.
    pub bridges: Vec<BridgeOptions>,
    /// The virtio devices but the IOMMU (`--disk`, `--rng`, `--console`:
    /// every type of [`crate::device_types::DEVICE_TYPES`]), each type's
    /// in the order given.
    pub devices: Vec<DeviceOptions>,
    /// `--iommu`.
    pub iommu: Option<IommuOptions>,
}

impl MachineOptions {
    /// `cpus` vCPUs and `memory` bytes of RAM, nothing else.
    pub fn new(cpus: u32, memory: u64) -> Self {
        Self { cpus, memory, bridges: Vec::new(), devices: Vec::new(), iommu: None }
    }
}

/// Whether one translated IOMMU domain may hold endpoints of different
/// declared coherency (`--iommu mixed-coherency=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixedCoherency {
    /// Accept such an ATTACH (the guest's choice, warned about by DMA103).
    #[default]
    Allow,
    /// Refuse it with `S_UNSUPP` (virtio 1.3, 5.13.6.3), so that the guest
    /// keeps coherent and non-coherent devices in different domains.
    Reject,
}

/// Parses a vCPU count (`--cpus`, `cpus =`): a whole number from 1.
pub fn parse_cpus(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("a VM needs at least 1 vCPU".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{}' is not a whole number of vCPUs", shown(text))),
    }
}

/// How a virtio device is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// virtio-mmio, declared in ACPI as `LNRO0005`.
    Mmio,
    /// virtio-pci behind the PCI host bridge.
    Pci,
}

/// Where and how a virtio device attaches: the keys every virtio device
/// takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
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
    /// PCI only: the device number on its bridge's bus 0 (1-31); `None`:
    /// the first free one.
    pub slot: Option<u8>,
    /// virtio-mmio only: the base of its register window; `None`: the
    /// first free one.
    pub addr: Option<u64>,
    /// `dma-pool=SIZE`: confine the device's DMA to a restricted DMA pool
    /// of this many bytes of its own (a valid pool size, see
    /// [`dma_pool_size`]); `None`: no pool of its own (a PCI device then
    /// takes its bridge's, if the bridge has one).
    pub dma_pool: Option<u64>,
}

/// One virtio device but the IOMMU as options: what it is (with what only
/// its type takes, such as a disk's file) and where and how it attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOptions {
    /// What it is.
    pub kind: DeviceKind,
    /// Where and how it attaches.
    pub attach: AttachOptions,
}

/// Keys every virtio device but the IOMMU takes.
pub const ATTACH_KEYS: &[&str] =
    &["id", "transport", "coherent", "direct-ram-access", "bridge", "slot", "addr", "dma-pool"];
/// Keys of `--disk` (and of a config file's `[[disk]]`).
pub const DISK_KEYS: &[&str] = &[
    "path",
    "readonly",
    "id",
    "transport",
    "coherent",
    "direct-ram-access",
    "bridge",
    "slot",
    "addr",
    "dma-pool",
];
/// Keys of `--net` (and of a config file's `[[net]]`).
pub const NET_KEYS: &[&str] =
    &["tap", "mac", "id", "transport", "coherent", "direct-ram-access", "bridge", "slot", "addr", "dma-pool"];
/// Keys of `--iommu` (and `[iommu]`): `type` and the keys of either kind
/// ([`VIRTIO_IOMMU_KEYS`], [`VTD_KEYS`]).
pub const IOMMU_KEYS: &[&str] = &[
    "type",
    "id",
    "transport",
    "bridge",
    "slot",
    "addr",
    "direct-ram-access",
    "mixed-coherency",
    "boot-bypass",
    "coherent",
];
/// Keys only `type=virtio` takes: where the virtio-iommu sits and how it
/// behaves. No `coherent`: a virtio device's coherency follows its
/// transport's rules.
pub const VIRTIO_IOMMU_KEYS: &[&str] =
    &["id", "transport", "bridge", "slot", "addr", "direct-ram-access", "mixed-coherency", "boot-bypass"];
/// Keys only `type=vtd` takes. A VT-d unit is a register window at a fixed
/// address, not a device on a bus: nothing places it.
pub const VTD_KEYS: &[&str] = &["coherent"];
/// Keys of `--pci-bridge` (and `[[pci-bridge]]`).
pub const BRIDGE_KEYS: &[&str] = &["id", "coherent", "direct-ram-access", "hotplug", "dma-pool"];

/// `key=value` pairs: borrowed from the option text on the command line,
/// made from TOML values by the config file.
pub type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// Why a set of pairs is not a valid option: the key at fault (`None`
/// when it is the option as a whole, such as a required key left out), so
/// that a config file can name the line, and the message the command line
/// prints as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The key at fault.
    pub key: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl OptionError {
    fn at(key: &str, message: impl Into<String>) -> Self {
        Self { key: Some(key.to_string()), message: message.into() }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self { key: None, message: message.into() }
    }
}

/// Splits command-line option text into pairs (a config file has no text
/// to split: its keys are pairs already, and TOML forbids duplicates).
fn split(text: &str) -> Result<Pairs<'_>, String> {
    let mut out: Pairs<'_> = Vec::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (key, value) =
            item.split_once('=').ok_or_else(|| format!("'{}' is not key=value", shown(item)))?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key '{}' given twice", shown(key)));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Rejects the first key not in `known`.
fn known_keys(pairs: &Pairs<'_>, known: &[&str]) -> Result<(), OptionError> {
    match pairs.iter().find(|(key, _)| !known.contains(key)) {
        Some((key, _)) => {
            Err(OptionError::at(key, format!("unknown key '{}' (known: {})", shown(key), known.join(", "))))
        }
        None => Ok(()),
    }
}

/// How an option value `on`/`off` is written back (messages, tables).
pub(crate) fn on_off_word(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

fn on_off(key: &str, value: &str) -> Result<bool, OptionError> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(OptionError::at(key, format!("{key}={}: expected on or off", shown(value)))),
    }
}

/// A name (`id=`, `bridge=`): 1-32 letters, digits, '-' or '_'.
fn id(key: &str, value: &str) -> Result<String, OptionError> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(value.to_string())
    } else {
        Err(OptionError::at(key, format!("{key}={}: use 1-32 letters, digits, '-' or '_'", shown(value))))
    }
}

/// `slot=N`: a device number on bus 0, 1-31 (0 is the host bridge).
fn slot(key: &str, value: &str) -> Result<u8, OptionError> {
    match value.parse::<u8>() {
        Ok(n @ 1..=31) => Ok(n),
        _ => Err(OptionError::at(
            key,
            format!(
                "{key}={}: expected a PCI device number from 1 to 31 (0 is the host bridge)",
                shown(value)
            ),
        )),
    }
}

/// `addr=A`: an address, hexadecimal with `0x` or decimal (TOML integers
/// arrive in decimal). Whether it is a virtio-mmio window is the machine
/// model's to say: the address map is.
fn addr(key: &str, value: &str) -> Result<u64, OptionError> {
    let parsed = match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => value.parse::<u64>(),
    };
    parsed.map_err(|_| {
        OptionError::at(key, format!("{key}={}: expected an address such as 0xd0001000", shown(value)))
    })
}

/// Granule of a restricted DMA pool's size: one swiotlb segment,
/// `IO_TLB_SEGSIZE` (128) slots of `IO_TLB_SIZE` (2 KiB) in Linux's
/// kernel/dma/swiotlb.c, the longest buffer one mapping may bounce. Linux
/// cuts a pool into 2 KiB slots and searches them a segment at a time, so
/// a size in whole segments wastes nothing and lets every mapping size
/// fit.
pub const DMA_POOL_GRANULE: u64 = 256 << 10;
/// Largest restricted DMA pool: Linux's restricted pools are for bounce
/// buffers and rings, not for a device's whole working set.
pub const DMA_POOL_MAX: u64 = 1 << 30;

/// `dma-pool=SIZE`: a size such as `4M`, a whole number of
/// [`DMA_POOL_GRANULE`]s, at most [`DMA_POOL_MAX`].
pub fn dma_pool_size(key: &str, value: &str) -> Result<u64, OptionError> {
    let size = crate::size::parse_size(value)
        .map_err(|e| OptionError::at(key, format!("{key}={}: {e}", shown(value))))?;
    if size == 0 || size % DMA_POOL_GRANULE != 0 || size > DMA_POOL_MAX {
        return Err(OptionError::at(
            key,
            format!(
                "{key}={}: a restricted DMA pool is a multiple of 256K (one swiotlb segment) from 256K to 1G, \
                 such as 4M",
                shown(value)
            ),
        ));
    }
    Ok(size)
}

fn transport(key: &str, value: &str) -> Result<Transport, OptionError> {
    match value {
        "mmio" => Ok(Transport::Mmio),
        "pci" => Ok(Transport::Pci),
        _ => Err(OptionError::at(key, format!("{key}={}: expected mmio or pci", shown(value)))),
    }
}

/// Parses the attachment keys; returns the other pairs.
fn attach(pairs: Pairs<'_>) -> Result<(AttachOptions, Pairs<'_>), OptionError> {
    let mut c = AttachOptions {
        id: None,
        transport: Transport::Mmio,
        coherent: None,
        direct_ram_access: None,
        bridge: None,
        slot: None,
        addr: None,
        dma_pool: None,
    };
    let mut rest = Vec::new();
    for (key, value) in pairs {
        match key {
            "id" => c.id = Some(id(key, value)?),
            "transport" => c.transport = transport(key, value)?,
            "coherent" => c.coherent = Some(on_off(key, value)?),
            "direct-ram-access" => c.direct_ram_access = Some(on_off(key, value)?),
            "bridge" => c.bridge = Some(id(key, value)?),
            "slot" => c.slot = Some(slot(key, value)?),
            "addr" => c.addr = Some(addr(key, value)?),
            "dma-pool" => c.dma_pool = Some(dma_pool_size(key, value)?),
            _ => rest.push((key, value)),
        }
    }
    Ok((c, rest))
}

/// Parses the option text of a registered device type (`--disk
/// path=FILE,readonly=on`, `--rng`, ...; see
/// [`crate::device_types::DEVICE_TYPES`]).
pub fn parse_device(option: &str, text: &str) -> Result<DeviceOptions, String> {
    let Some(t) = device_type(option) else {
        return Err(format!("no virtio device type is called '{option}'"));
    };
    (t.parse)(split(text)?).map_err(|e| e.message)
}

/// Parses `--disk path=FILE[,readonly=on|off][,id=..][,transport=..][,coherent=..][,direct-ram-access=..]
/// [,bridge=..][,slot=..][,addr=..]`.
pub fn parse_disk(text: &str) -> Result<DeviceOptions, String> {
    parse_device("disk", text)
}

/// Parses `--rng [KEYS]` (the attachment keys).
pub fn parse_rng(text: &str) -> Result<DeviceOptions, String> {
    parse_device("rng", text)
}

/// Parses `--console [KEYS]` (the attachment keys).
pub fn parse_console(text: &str) -> Result<DeviceOptions, String> {
    parse_device("console", text)
}

/// The longest disk `id=`: the guest reads it as the disk's serial
/// (`VIRTIO_BLK_T_GET_ID`), which has 20 bytes.
pub const DISK_ID_MAX: usize = 20;

/// A disk from its pairs (the command line's or a config file's).
pub fn disk_from_pairs(pairs: Pairs<'_>) -> Result<DeviceOptions, OptionError> {
    known_keys(&pairs, DISK_KEYS)?;
    let (attach, rest) = attach(pairs)?;
    let (mut path, mut readonly) = (None, false);
    for (key, value) in rest {
        match key {
            "path" if !value.is_empty() => path = Some(PathBuf::from(value)),
            "path" => return Err(OptionError::at(key, "path= is empty")),
            _ => readonly = on_off(key, value)?,
        }
    }
    let path = path.ok_or_else(|| OptionError::whole("path=FILE is required"))?;
    if let Some(id) = attach.id.as_deref().filter(|id| id.len() > DISK_ID_MAX) {
        return Err(OptionError::at(
            "id",
            format!(
                "id={id}: a disk's id is its virtio-blk serial, at most {DISK_ID_MAX} characters (this one has {})",
                id.len()
            ),
        ));
    }
    Ok(DeviceOptions { kind: DeviceKind::Disk { path, readonly }, attach })
}

/// The longest TAP interface name (`IFNAMSIZ` less its NUL).
pub const TAP_NAME_MAX: usize = 15;

/// A network device from its pairs (the command line's or a config
/// file's).
pub fn net_from_pairs(pairs: Pairs<'_>) -> Result<DeviceOptions, OptionError> {
    known_keys(&pairs, NET_KEYS)?;
    let (attach, rest) = attach(pairs)?;
    let (mut tap, mut mac) = (None, None);
    for (key, value) in rest {
        match key {
            "tap" => {
                let ok = !value.is_empty()
                    && value.len() <= TAP_NAME_MAX
                    && value != "."
                    && value != ".."
                    && value.chars().all(|c| c.is_ascii_graphic() && c != '/' && c != ',' && c != '=');
                if !ok {
                    return Err(OptionError::at(
                        key,
                        format!(
                            "tap={}: an interface name is 1-{TAP_NAME_MAX} printable characters without '/'",
                            shown(value)
                        ),
                    ));
                }
                tap = Some(value.to_string());
            }
            _ => {
                mac = Some(
                    MacAddress::parse(value)
                        .map_err(|e| OptionError::at(key, format!("mac={}: {e}", shown(value))))?,
                )
            }
        }
    }
    let tap = tap.ok_or_else(|| OptionError::whole("tap=NAME is required (an existing TAP interface)"))?;
    Ok(DeviceOptions { kind: DeviceKind::Net { tap, mac }, attach })
}

/// Parses `--net tap=NAME[,mac=MAC][,KEYS]`.
pub fn parse_net(text: &str) -> Result<DeviceOptions, String> {
    parse_device("net", text)
}

/// The attachment of a device that takes nothing else (an RNG, the
/// console), from its pairs.
pub fn attach_only_from_pairs(pairs: Pairs<'_>) -> Result<AttachOptions, OptionError> {
    known_keys(&pairs, ATTACH_KEYS)?;
    let (attach, _) = attach(pairs)?;
    Ok(attach)
}

/// Which IOMMU `--iommu type=` asks for: one per machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuKind {
    /// A virtio-iommu (virtio device 23) declared in the ACPI VIOT or the
    /// device tree: placed like any virtio device.
    Virtio {
        /// `boot-bypass=`: the device's `bypass` state at reset, for
        /// endpoints attached to no domain (virtio 1.3, 5.13.4,
        /// `VIRTIO_IOMMU_F_BYPASS_CONFIG`). Off by default: a translated
        /// device reaches memory only through translation, so a guest
        /// without a virtio-iommu driver gets faults (and one line in the
        /// host's log saying why) rather than silently untranslated DMA.
        boot_bypass: bool,
    },
    /// Intel VT-d remapping hardware units declared in the ACPI DMAR
    /// (x86_64 only): one per PCI segment with translated functions, at
    /// fixed register windows, taking no PCI slot.
    Vtd {
        /// Page-walk coherency (ECAP.C, VT-d 3.4 section 11.4.3): whether
        /// the units' reads of root, context and page tables snoop the CPU
        /// caches. Off makes the guest flush its page-table writes.
        coherent: bool,
    },
}

impl IommuKind {
    /// The `type=` value.
    pub fn name(self) -> &'static str {
        match self {
            IommuKind::Virtio { .. } => "virtio",
            IommuKind::Vtd { .. } => "vtd",
        }
    }
}

/// `--iommu`: the machine's IOMMU. The placement keys (`id`, `transport`,
/// `bridge`, `slot`, `addr`), `direct-ram-access` and `mixed-coherency`
/// are the virtio-iommu's; with `type=vtd` they keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuOptions {
    /// Which IOMMU, with what only that kind takes.
    pub kind: IommuKind,
    /// Stable name (default `iommu0`).
    pub id: Option<String>,
    /// Transport (default pci).
    pub transport: Transport,
    /// Its PCI host bridge (default the first).
    pub bridge: Option<String>,
    /// Whether a translated domain may hold endpoints of different declared
    /// coherency (default allow).
    pub mixed_coherency: MixedCoherency,
    /// `direct-ram-access=`: `None` (the only valid choice) leaves the
    /// IOMMU outside its own scope; `off` asks for it to be translated by
    /// itself, which the checks reject with a coded error (kept
    /// expressible so that the rule is explained rather than unparseable).
    pub direct_ram_access: Option<bool>,
    /// PCI only: its device number (1-31); `None`: the first free one.
    pub slot: Option<u8>,
    /// virtio-mmio only: its window's base; `None`: the first free one.
    pub addr: Option<u64>,
}

/// Parses `--iommu [type=virtio][,transport=pci|mmio][,id=NAME][,bridge=NAME][,slot=N][,addr=A]
/// [,mixed-coherency=allow|reject][,boot-bypass=on|off][,direct-ram-access=on|off]` or
/// `--iommu type=vtd[,coherent=on|off]`.
pub fn parse_iommu(text: &str) -> Result<IommuOptions, String> {
    iommu_from_pairs(split(text)?).map_err(|e| e.message)
}

/// The `type=` of `--iommu` pairs (default virtio), with the first key
/// that belongs to the other kind refused.
fn iommu_kind(pairs: &Pairs<'_>) -> Result<IommuKind, OptionError> {
    let mut kind = IommuKind::Virtio { boot_bypass: false };
    if let Some((key, value)) = pairs.iter().find(|(key, _)| *key == "type") {
        kind = match *value {
            "virtio" => kind,
            "vtd" => IommuKind::Vtd { coherent: true },
            _ => return Err(OptionError::at(key, format!("{key}={}: expected virtio or vtd", shown(value)))),
        };
    }
    let (foreign, why): (&[&str], &str) = match kind {
        IommuKind::Virtio { .. } => (
            VTD_KEYS,
            "a key of type=vtd (the VT-d page-walk coherency); the virtio-iommu's coherency follows its \
             transport: drop it, or add type=vtd",
        ),
        IommuKind::Vtd { .. } => (
            VIRTIO_IOMMU_KEYS,
            "a key of type=virtio: a VT-d unit is a register window at a fixed address, declared in the DMAR, \
             not a device placed on a bus, and it is never in any scope; type=vtd takes coherent=on|off only",
        ),
    };
    match pairs.iter().find(|(key, _)| foreign.contains(key)) {
        Some((key, value)) => Err(OptionError::at(key, format!("{key}={}: {why}", shown(value)))),
        None => Ok(kind),
    }
}

/// The IOMMU from its pairs.
pub fn iommu_from_pairs(pairs: Pairs<'_>) -> Result<IommuOptions, OptionError> {
    known_keys(&pairs, IOMMU_KEYS)?;
    let mut kind = iommu_kind(&pairs)?;
    let pairs: Pairs<'_> = pairs.into_iter().filter(|(key, _)| *key != "type").collect();
    // The IOMMU defaults to PCI, the other devices to virtio-mmio.
    let transport_given = pairs.iter().any(|(key, _)| *key == "transport");
    let (attach, rest) = attach(pairs)?;
    let transport = if transport_given { attach.transport } else { Transport::Pci };
    let mut mixed_coherency = MixedCoherency::Allow;
    for (key, value) in rest {
        if key == "boot-bypass" {
            // iommu_kind refused the key for VT-d.
            let given = on_off(key, value)?;
            if let IommuKind::Virtio { boot_bypass } = &mut kind {
                *boot_bypass = given;
            }
            continue;
        }
        mixed_coherency = match value {
            "allow" => MixedCoherency::Allow,
            "reject" => MixedCoherency::Reject,
            _ => {
                return Err(OptionError::at(key, format!("{key}={}: expected allow or reject", shown(value))))
            }
        };
    }
    // `attach` read `coherent` as a device's; for VT-d it is the units'
    // page-walk coherency (iommu_kind refused it for the virtio-iommu).
    if let (IommuKind::Vtd { coherent }, Some(given)) = (&mut kind, attach.coherent) {
        *coherent = given;
    }
    Ok(IommuOptions {
        kind,
        id: attach.id,
        transport,
        bridge: attach.bridge,
        mixed_coherency,
        direct_ram_access: attach.direct_ram_access,
        slot: attach.slot,
        addr: attach.addr,
    })
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
    /// `dma-pool=SIZE`: one restricted DMA pool every function below the
    /// bridge bounces through (but a function with a pool of its own).
    pub dma_pool: Option<u64>,
}

/// Parses `--pci-bridge id=NAME[,coherent=on|off][,direct-ram-access=on|off][,hotplug=on|off][,dma-pool=SIZE]`.
pub fn parse_bridge(text: &str) -> Result<BridgeOptions, String> {
    bridge_from_pairs(split(text)?).map_err(|e| e.message)
}

/// A host bridge from its pairs.
pub fn bridge_from_pairs(pairs: Pairs<'_>) -> Result<BridgeOptions, OptionError> {
    known_keys(&pairs, BRIDGE_KEYS)?;
    let mut b = BridgeOptions {
        id: String::new(),
        coherent: true,
        direct_ram_access: false,
        hotplug: false,
        dma_pool: None,
    };
    let mut named = false;
    for (key, value) in pairs {
        match key {
            "id" => {
                b.id = id(key, value)?;
                named = true;
            }
            "coherent" => b.coherent = on_off(key, value)?,
            "direct-ram-access" => b.direct_ram_access = on_off(key, value)?,
            "dma-pool" => b.dma_pool = Some(dma_pool_size(key, value)?),
            _ => b.hotplug = on_off(key, value)?,
        }
    }
    if !named {
        return Err(OptionError::whole(format!(
            "id=NAME is required ({DEFAULT_BRIDGE} sets the default bridge's properties; any other name adds a \
             bridge on the next PCI segment)"
        )));
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
        assert_eq!(d.kind, DeviceKind::Disk { path: PathBuf::from("/tmp/d.img"), readonly: true });
        assert_eq!(
            d.attach,
            AttachOptions {
                id: Some("boot".into()),
                transport: Transport::Pci,
                coherent: Some(false),
                direct_ram_access: None,
                bridge: Some("fast".into()),
                slot: None,
                addr: None,
                dma_pool: None,
            }
        );
        assert_eq!(parse_rng("direct-ram-access=on").unwrap().attach.direct_ram_access, Some(true));
        assert_eq!(parse_rng("direct-ram-access=off").unwrap().attach.direct_ram_access, Some(false));
    }

    #[test]
    fn defaults() {
        let d = parse_disk("path=x").unwrap();
        assert_eq!(d.kind, DeviceKind::Disk { path: PathBuf::from("x"), readonly: false });
        // What the user left out stays unset: the machine model resolves it.
        assert_eq!(
            d.attach,
            AttachOptions {
                id: None,
                transport: Transport::Mmio,
                coherent: None,
                direct_ram_access: None,
                bridge: None,
                slot: None,
                addr: None,
                dma_pool: None,
            }
        );
        assert_eq!(parse_iommu("").unwrap().transport, Transport::Pci);
        assert_eq!(parse_iommu("transport=mmio").unwrap().transport, Transport::Mmio);
        assert_eq!(parse_iommu("bridge=b1").unwrap().bridge.as_deref(), Some("b1"));
        assert!(parse_iommu("coherent=off").unwrap_err().contains("coherent=off: a key of type=vtd"));
        assert_eq!(parse_iommu("").unwrap().kind, IommuKind::Virtio { boot_bypass: false });
        assert_eq!(parse_iommu("type=virtio").unwrap().kind, IommuKind::Virtio { boot_bypass: false });
        assert_eq!(parse_iommu("").unwrap().mixed_coherency, MixedCoherency::Allow);
        assert_eq!(parse_iommu("mixed-coherency=reject").unwrap().mixed_coherency, MixedCoherency::Reject);
        assert_eq!(
            parse_iommu("mixed-coherency=maybe").unwrap_err(),
            "mixed-coherency=maybe: expected allow or reject"
        );
        assert_eq!(parse_rng("").unwrap().attach.transport, Transport::Mmio);
    }

    #[test]
    fn bridges() {
        assert_eq!(
            parse_bridge("id=fast").unwrap(),
            BridgeOptions {
                id: "fast".into(),
                coherent: true,
                direct_ram_access: false,
                hotplug: false,
                dma_pool: None
            }
        );
        assert_eq!(
            parse_bridge("id=pci0,coherent=off,direct-ram-access=on,hotplug=on").unwrap(),
            BridgeOptions {
                id: "pci0".into(),
                coherent: false,
                direct_ram_access: true,
                hotplug: true,
                dma_pool: None
            }
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
        assert!(parse_rng("path=x").unwrap_err().contains("unknown key 'path'"));
        for (text, needle) in [
            ("slot=0", "slot=0: expected a PCI device number from 1 to 31"),
            ("slot=32", "slot=32: expected a PCI device number"),
            ("addr=0xzz", "addr=0xzz: expected an address"),
            ("addr=", "addr=: expected an address"),
        ] {
            let err = parse_rng(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn dma_pools_are_whole_swiotlb_segments() {
        assert_eq!(parse_disk("path=x,dma-pool=4M").unwrap().attach.dma_pool, Some(4 << 20));
        assert_eq!(parse_rng("dma-pool=256K").unwrap().attach.dma_pool, Some(256 << 10));
        assert_eq!(parse_console("dma-pool=1G").unwrap().attach.dma_pool, Some(1 << 30));
        assert_eq!(parse_bridge("id=b,dma-pool=8M").unwrap().dma_pool, Some(8 << 20));
        for text in
            ["dma-pool=0", "dma-pool=128K", "dma-pool=1000K", "dma-pool=2G", "dma-pool=x", "dma-pool="]
        {
            let err = parse_rng(text).unwrap_err();
            assert!(err.starts_with(text), "{text}: {err}");
            let err = parse_bridge(&format!("id=b,{text}")).unwrap_err();
            assert!(err.starts_with(text), "{text}: {err}");
        }
        assert!(parse_rng("dma-pool=1000K").unwrap_err().contains("a multiple of 256K"));
        // The IOMMU is never confined: it reads guest-physical addresses.
        assert!(parse_iommu("dma-pool=4M").unwrap_err().contains("unknown key 'dma-pool'"));
        let err = attach_only_from_pairs(vec![("dma-pool", "3K")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("dma-pool"));
    }

    #[test]
    fn net_keys() {
        let d = parse_net("tap=tap0,mac=02:aa:bb:cc:dd:ee,transport=pci,id=up,direct-ram-access=on").unwrap();
        let mac = Some(MacAddress([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        assert_eq!(d.kind, DeviceKind::Net { tap: "tap0".into(), mac });
        assert_eq!(d.attach.transport, Transport::Pci);
        assert_eq!(d.attach.id.as_deref(), Some("up"));
        assert_eq!(parse_net("tap=t").unwrap().kind, DeviceKind::Net { tap: "t".into(), mac: None });
        for (text, message) in [
            ("", "tap=NAME is required"),
            ("mac=02:00:00:00:00:01", "tap=NAME is required"),
            ("tap=", "an interface name is 1-15"),
            ("tap=sixteen-chars-xx", "an interface name is 1-15"),
            ("tap=a/b", "an interface name is 1-15"),
            ("tap=..", "an interface name is 1-15"),
            ("tap=t,mac=02:00:00:00:00", "mac=02:00:00:00:00: expected six hexadecimal bytes"),
            ("tap=t,mac=03:00:00:00:00:00", "multicast"),
            ("tap=t,path=x", "unknown key 'path'"),
        ] {
            let err = parse_net(text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn a_disk_id_fits_the_virtio_blk_serial() {
        assert!(parse_disk(&format!("path=x,id={}", "a".repeat(20))).is_ok());
        let err = disk_from_pairs(vec![("path", "x"), ("id", &"a".repeat(21))]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("id"));
        assert!(
            err.message.contains("virtio-blk serial, at most 20 characters (this one has 21)"),
            "{err:?}"
        );
        // Other devices' ids are names only.
        assert!(parse_rng(&format!("id={}", "a".repeat(32))).is_ok());
    }

    #[test]
    fn echoed_values_are_escaped_and_shortened() {
        let err = parse_disk("path=x,id=a\nb\u{1b}[2J").unwrap_err();
        assert_eq!(err, "id=a\\nb\\u{1b}[2J: use 1-32 letters, digits, '-' or '_'");
        let long = "z".repeat(100_000);
        for err in [
            parse_disk(&format!("path=x,transport={long}")).unwrap_err(),
            parse_disk(&format!("path=x,{long}=1")).unwrap_err(),
            parse_disk(&format!("path=x,{long}")).unwrap_err(),
            parse_cpus(&long).unwrap_err(),
        ] {
            assert!(err.len() < 1000, "{} characters", err.len());
            assert!(err.contains("... (100000 characters)"), "{err}");
        }
    }

    #[test]
    fn explicit_places() {
        let c = parse_rng("transport=pci,slot=31").unwrap().attach;
        assert_eq!((c.slot, c.addr), (Some(31), None));
        let c = parse_rng("addr=0xd0001000").unwrap().attach;
        assert_eq!(c.addr, Some(0xd000_1000));
        // Decimal, as a config file's integers arrive.
        assert_eq!(parse_rng("addr=3489665024").unwrap().attach.addr, Some(0xd000_1000));
        let i = parse_iommu("slot=4,direct-ram-access=off").unwrap();
        assert_eq!((i.slot, i.direct_ram_access, i.transport), (Some(4), Some(false), Transport::Pci));
        assert_eq!(parse_iommu("").unwrap().direct_ram_access, None);
    }

    #[test]
    fn pair_errors_name_their_key() {
        let err = disk_from_pairs(vec![("path", "a,b.img"), ("readonlyy", "on")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("readonlyy"));
        assert!(err.message.starts_with("unknown key 'readonlyy' (known: path, readonly, id,"), "{err:?}");
        // A path may hold a comma in a config file.
        let kind = disk_from_pairs(vec![("path", "a,b.img")]).unwrap().kind;
        assert_eq!(kind, DeviceKind::Disk { path: PathBuf::from("a,b.img"), readonly: false });
        let err = disk_from_pairs(vec![("readonly", "on")]).unwrap_err();
        assert_eq!(err, OptionError { key: None, message: "path=FILE is required".into() });
        let err = bridge_from_pairs(vec![("id", "b"), ("hotplug", "maybe")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("hotplug"));
        let err = iommu_from_pairs(vec![("mixed-coherency", "x")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("mixed-coherency"));
        let err = attach_only_from_pairs(vec![("transport", "usb")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("transport"));
    }

    #[test]
    fn iommu_types_and_their_keys() {
        let vtd = parse_iommu("type=vtd").unwrap();
        assert_eq!(vtd.kind, IommuKind::Vtd { coherent: true });
        assert_eq!(parse_iommu("type=vtd,coherent=off").unwrap().kind, IommuKind::Vtd { coherent: false });
        assert_eq!(parse_iommu("coherent=on,type=vtd").unwrap().kind, IommuKind::Vtd { coherent: true });
        // The config file's booleans.
        let kind = iommu_from_pairs(vec![("type", "vtd"), ("coherent", "false")]).unwrap().kind;
        assert_eq!(kind, IommuKind::Vtd { coherent: false });
        assert_eq!(parse_iommu("type=intel").unwrap_err(), "type=intel: expected virtio or vtd");
        assert!(parse_iommu("type=vtd,coherent=maybe")
            .unwrap_err()
            .contains("coherent=maybe: expected on or off"));
        for key in
            ["transport=pci", "slot=3", "addr=0xd0000000", "mixed-coherency=reject", "id=x", "bridge=b"]
        {
            let err = parse_iommu(&format!("type=vtd,{key}")).unwrap_err();
            assert!(err.starts_with(&format!("{key}: a key of type=virtio: a VT-d unit")), "{err}");
            assert!(err.contains("type=vtd takes coherent=on|off only"), "{err}");
        }
        let err = iommu_from_pairs(vec![("type", "vtd"), ("direct-ram-access", "off")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("direct-ram-access"));
        let err = iommu_from_pairs(vec![("coherent", "false")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("coherent"));
        assert!(err.message.contains("drop it, or add type=vtd"), "{err:?}");
        assert!(parse_iommu("type=vtd,type=virtio").unwrap_err().contains("key 'type' given twice"));
    }

    #[test]
    fn boot_bypass_is_the_virtio_iommus() {
        assert_eq!(parse_iommu("boot-bypass=on").unwrap().kind, IommuKind::Virtio { boot_bypass: true });
        assert_eq!(parse_iommu("boot-bypass=off").unwrap().kind, IommuKind::Virtio { boot_bypass: false });
        let kind = iommu_from_pairs(vec![("boot-bypass", "true")]).unwrap().kind;
        assert_eq!(kind, IommuKind::Virtio { boot_bypass: true });
        assert_eq!(parse_iommu("boot-bypass=maybe").unwrap_err(), "boot-bypass=maybe: expected on or off");
        let err = parse_iommu("type=vtd,boot-bypass=on").unwrap_err();
        assert!(err.starts_with("boot-bypass=on: a key of type=virtio"), "{err}");
    }
}
