//! What one run's output says the guest saw: the `DMAVM` lines of the
//! guest's init and of `checks/boot-test.sh`, the lines the guest wrote to
//! its virtio consoles, dmavm's `--stats` and error lines, and a kernel
//! panic if there was one.

/// One virtio device as the guest listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenVirtio {
    /// `virtioN`.
    pub name: String,
    /// The virtio device ID.
    pub device: u32,
    /// The parent device (`0000:00:02.0`, `LNRO0005:01`).
    pub parent: String,
    /// The parent's MMIO base (virtio-mmio devices).
    pub addr: Option<u64>,
    /// Its IOMMU group, if in one.
    pub group: Option<String>,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// Negotiated features, bit 0 first.
    pub features: String,
}

impl SeenVirtio {
    /// Whether feature bit `bit` was negotiated.
    pub fn feature(&self, bit: usize) -> bool {
        self.features.as_bytes().get(bit) == Some(&b'1')
    }
}

/// One disk as the guest exercised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDisk {
    /// Its serial (the device id).
    pub serial: String,
    /// `vdX`.
    pub dev: String,
    /// Whether the guest sees it read-only.
    pub readonly: bool,
    /// SHA-256 of all of it, as read.
    pub sha: String,
    /// SHA-256 of the first MiB after writing the pattern (writable disks).
    pub readback: Option<String>,
    /// Whether a write was refused (read-only disks).
    pub write_refused: Option<bool>,
}

/// The cache maintenance and memory type the guest gave one disk's DMA
/// (arm64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCoherency {
    /// The disk's serial (the device id).
    pub serial: String,
    /// `arch_sync_dma_for_device()` calls while it was re-probed and read.
    pub sync_for_device: u64,
    /// `arch_sync_dma_for_cpu()` calls, the same.
    pub sync_for_cpu: u64,
    /// Memory types `dma_pgprot()` gave its coherent allocations
    /// (`normal`, `normal-nc`), or `none`.
    pub prot: String,
}

impl SeenCoherency {
    /// Whether its coherent allocations were mapped non-cacheable.
    pub fn non_cacheable(&self) -> bool {
        self.prot.split(',').any(|p| p == "normal-nc")
    }
}

/// The guest's half of the `net` exchange on one link
/// (`checks/net-exchange.sh`'s lines after `bt_net=MAC`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeenNet {
    /// The MAC the guest was asked about.
    pub mac: String,
    /// The interface with that MAC, if the guest found one.
    pub iface: Option<String>,
    /// The interface's driver.
    pub driver: Option<String>,
    /// The link as the guest saw it once up (`carrier`).
    pub carrier: Option<bool>,
    /// Whether the peer answered the ping.
    pub ping: Option<bool>,
    /// SHA-256 of the block the guest received (none when the download
    /// failed).
    pub down_sha: Option<String>,
    /// Its size.
    pub down_bytes: Option<u64>,
    /// Seconds the download took.
    pub down_secs: Option<f64>,
    /// Whether the guest's `nc` sent the block back without an error.
    pub up_ok: Option<bool>,
    /// Seconds the upload took.
    pub up_secs: Option<f64>,
    /// net-exchange.sh's exit status.
    pub status: Option<i32>,
}

/// dmavm's `--stats` counters of one endpoint (a virtio-iommu endpoint or
/// a VT-d unit's source ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// MAP requests (virtio-iommu).
    pub map: u64,
    /// Translations.
    pub translations: u64,
    /// Faults.
    pub faults: u64,
    /// Refused ATTACH requests (virtio-iommu).
    pub refused_attach: u64,
    /// Accesses a VT-d unit let through untranslated because the guest had
    /// not turned translation on.
    pub untranslated: u64,
}

/// Everything a run's output says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The guest's init ran (`DMAVM init`).
    pub init: bool,
    /// The kernel version init reported.
    pub kernel: Option<String>,
    /// Modules init could not load.
    pub insmod_failed: Vec<String>,
    /// The drivers the kernel has (built in or loaded): those of the
    /// virtio bus and the virtio-pci and virtio-mmio transports, by their
    /// sysfs names.
    pub drivers: Option<Vec<String>>,
    /// Virtio devices.
    pub virtio: Vec<SeenVirtio>,
    /// Disks.
    pub disks: Vec<SeenDisk>,
    /// hwrng name and bytes read.
    pub rngs: Vec<(String, u64)>,
    /// Virtio consoles written to.
    pub consoles: Vec<String>,
    /// The coherency measurements of the disks (arm64).
    pub coherency: Vec<SeenCoherency>,
    /// Why the guest could not measure coherency, if it could not.
    pub coherency_error: Option<String>,
    /// Lines that arrived through a virtio console (`DMAVM-HVC hvcN`).
    pub console_lines: Vec<String>,
    /// The `net` exchange on each link the guest was asked about.
    pub nets: Vec<SeenNet>,
    /// Kernel-log lines matching a fail pattern (the first 20).
    pub klog: Vec<String>,
    /// How many kernel-log lines matched.
    pub klog_bad: Option<u64>,
    /// The check reached its end.
    pub done: bool,
    /// The check's exit status, from init.
    pub check_status: Option<i32>,
    /// The VT-d units the guest's kernel registered
    /// (/sys/class/iommu/dmar*), if the check said.
    pub dmar_units: Option<u64>,
    /// The DMAR's remapping structures as the guest read them
    /// (`SSSS[bb:dd.f,...]` per DRHD, `;`-separated; `none`), if the check
    /// said.
    pub dmar: Option<String>,
    /// `--stats` per device id.
    pub stats: Vec<(String, Counters)>,
    /// Fault reports the IOMMU dropped.
    pub dropped_faults: u64,
    /// dmavm's error lines.
    pub vmm_errors: Vec<String>,
    /// The first `Kernel panic` line.
    pub panic: Option<String>,
    /// The last line that came from the guest or dmavm.
    pub last_line: Option<String>,
}

/// `key=value` words of a line.
fn pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split_whitespace().filter_map(|w| w.split_once('='))
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    pairs(text).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Whether a `DMAVM` line is one of net-exchange.sh's (or ends a link's
/// exchange).
fn net_line(text: &str) -> bool {
    ["net_iface", "net_carrier", "ping", "down_sha", "up_secs", "bt_net_end"]
        .iter()
        .any(|k| text.starts_with(&format!("{k}=")))
}

/// One `--stats` line of an endpoint: `ID: endpoint 0x8: domain 1, N map,
/// ...` (virtio-iommu) or `ID: dmar0 source-id 00:02.0: domain 2, N
/// translations, ..., N untranslated (translation off)` (VT-d).
fn parse_counters(text: &str) -> Option<(String, Counters)> {
    let (id, rest) = match text.split_once(": endpoint ") {
        Some(found) => found,
        None => {
            let (id, rest) = text.split_once(": dmar")?;
            rest.split_once(" source-id ").filter(|(unit, _)| unit.parse::<u32>().is_ok())?;
            (id, rest)
        }
    };
    let mut c = Counters::default();
    for part in rest.split(", ") {
        let part = part.trim_end_matches(" (translation off)");
        let mut words = part.split_whitespace().rev();
        // "N map" and "... 0x8: domain none, 3 map": the number precedes the name
        let name = words.next()?;
        let Some(n) = words.next().and_then(|n| n.parse::<u64>().ok()) else { continue };
        match name {
            "map" => c.map = n,
            "translations" => c.translations = n,
            "faults" => c.faults = n,
            "attach" => c.refused_attach = n,
            "untranslated" => c.untranslated = n,
            _ => {}
        }
    }
    Some((id.trim().to_string(), c))
}

impl Observed {
    /// Reads a run's combined output.
    pub fn parse(text: &str) -> Self {
        let mut o = Observed::default();
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            if !line.trim().is_empty() {
                o.last_line = Some(line.trim().to_string());
            }
            if let Some(i) = line.find("DMAVM-KLOG ") {
                o.klog.push(line[i + "DMAVM-KLOG ".len()..].trim().to_string());
                continue;
            }
            if let Some(i) = line.find("DMAVM-HVC ") {
                o.console_lines.push(line[i + "DMAVM-HVC ".len()..].trim().to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("dmavm: stats: ") {
                if let Some(dropped) =
                    rest.strip_suffix(" fault reports dropped (the guest posted no event buffers)")
                {
                    o.dropped_faults += dropped.trim().parse::<u64>().unwrap_or(1);
                } else if let Some(c) = parse_counters(rest) {
                    o.stats.push(c);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("dmavm: error: ") {
                o.vmm_errors.push(rest.trim().to_string());
                continue;
            }
            if o.panic.is_none() {
                if let Some(i) = line.find("Kernel panic") {
                    o.panic = Some(line[i..].trim().to_string());
                }
            }
            let Some(i) = line.find("DMAVM ") else { continue };
            let rest = &line[i + "DMAVM ".len()..];
            if rest.starts_with("init ") || rest == "init" {
                o.init = true;
                o.kernel = value(rest, "kernel").map(str::to_string);
            } else if let Some(m) = value(rest, "insmod_failed") {
                o.insmod_failed.push(m.to_string());
            } else if let Some(list) = value(rest, "bt_drivers") {
                o.drivers = Some(
                    list.split(',').filter(|d| !d.is_empty() && *d != "-").map(str::to_string).collect(),
                );
            } else if let Some(name) = value(rest, "bt_virtio") {
                let device = value(rest, "device")
                    .and_then(|d| u32::from_str_radix(d.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0);
                let some = |v: Option<&str>| v.filter(|v| *v != "none" && *v != "-").map(str::to_string);
                o.virtio.push(SeenVirtio {
                    name: name.to_string(),
                    device,
                    parent: value(rest, "parent").unwrap_or("-").to_string(),
                    addr: value(rest, "addr").and_then(|a| u64::from_str_radix(a, 16).ok()),
                    group: some(value(rest, "group")),
                    driver: some(value(rest, "driver")),
                    features: value(rest, "features").unwrap_or("").to_string(),
                });
            } else if let Some(serial) = value(rest, "bt_disk") {
                let opt = |k: &str| value(rest, k).filter(|v| *v != "-");
                o.disks.push(SeenDisk {
                    serial: serial.to_string(),
                    dev: value(rest, "dev").unwrap_or("-").to_string(),
                    readonly: value(rest, "ro") == Some("1"),
                    sha: value(rest, "sha").unwrap_or("-").to_string(),
                    readback: opt("readback").map(str::to_string),
                    write_refused: opt("write_refused").map(|v| v == "1"),
                });
            } else if let Some(name) = value(rest, "bt_rng") {
                let bytes = value(rest, "bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
                o.rngs.push((name.to_string(), bytes));
            } else if let Some(serial) = value(rest, "bt_coherency") {
                let n = |k: &str| value(rest, k).and_then(|v| v.parse().ok()).unwrap_or(0);
                o.coherency.push(SeenCoherency {
                    serial: serial.to_string(),
                    sync_for_device: n("sync_for_device"),
                    sync_for_cpu: n("sync_for_cpu"),
                    prot: value(rest, "prot").unwrap_or("none").to_string(),
                });
            } else if let Some(why) = value(rest, "bt_coherency_error") {
                o.coherency_error = Some(why.to_string());
            } else if let Some(name) = value(rest, "bt_hvc") {
                o.consoles.push(name.to_string());
            } else if let Some(n) = value(rest, "bt_dmar_units") {
                o.dmar_units = n.parse().ok();
                o.dmar = value(rest, "structures").map(str::to_string);
            } else if let Some(mac) = value(rest, "bt_net") {
                o.nets.push(SeenNet {
                    mac: mac.to_string(),
                    iface: value(rest, "iface").filter(|i| *i != "none").map(str::to_string),
                    ..SeenNet::default()
                });
            } else if let Some(net) = o.nets.last_mut().filter(|_| net_line(rest)) {
                let flag = |k: &str| value(rest, k).map(|v| v == "1");
                let number = |k: &str| value(rest, k).and_then(|v| v.parse::<f64>().ok());
                if value(rest, "net_iface").is_some() {
                    net.driver = value(rest, "net_driver").map(str::to_string);
                } else if value(rest, "net_carrier").is_some() {
                    net.carrier = flag("net_carrier");
                } else if value(rest, "ping").is_some() {
                    net.ping = flag("ping");
                } else if let Some(sha) = value(rest, "down_sha") {
                    net.down_sha = Some(sha.to_string()).filter(|s| s != "-");
                    net.down_bytes = value(rest, "down_bytes").and_then(|b| b.parse().ok());
                    net.down_secs = number("down_secs");
                } else if value(rest, "up_secs").is_some() {
                    net.up_ok = flag("up_ok");
                    net.up_secs = number("up_secs");
                } else if value(rest, "bt_net_end").is_some() {
                    net.status = value(rest, "status").and_then(|s| s.parse().ok());
                }
            } else if let Some(n) = value(rest, "bt_klog_bad") {
                o.klog_bad = n.parse().ok();
            } else if value(rest, "bt_done").is_some() {
                o.done = true;
            } else if value(rest, "check") == Some("boot-test") {
                o.check_status = value(rest, "status").and_then(|s| s.parse().ok());
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = "\
[    0.000000] Linux version 6.12
DMAVM init uptime=3.1 cpus=1 mem_kb=200000 kernel=6.12.57+deb13-cloud-amd64
DMAVM insmod_failed=virtio-iommu
DMAVM bt_drivers=virtio_blk,virtio_console,virtio-pci
DMAVM bt_virtio=virtio0 device=0x0017 parent=0000:00:01.0 addr=- group=none driver=virtio_iommu features=1110
DMAVM bt_virtio=virtio1 device=0x0002 parent=LNRO0005:00 addr=d0000000 group=1 driver=virtio_blk features=00000000000000000000000000000000011
DMAVM bt_disk=disk0 dev=vda ro=0 sha=abc readback=def write_refused=-
DMAVM bt_disk=ro dev=vdb ro=1 sha=123 readback=- write_refused=1
DMAVM bt_rng=virtio_rng.0 bytes=65536
DMAVM-HVC hvc0\r
DMAVM bt_hvc=hvc0
DMAVM-KLOG [    2.1] WARNING: CPU: 0 PID: 1 at x
DMAVM bt_coherency=disk0 sync_for_device=12 sync_for_cpu=7 prot=normal,normal-nc
DMAVM bt_net=02:aa:bb:cc:dd:01 host=169.254.10.1 iface=eth0
DMAVM net_iface=eth0 net_mac=02:aa:bb:cc:dd:01 net_driver=virtio_net
DMAVM net_carrier=1
DMAVM ping=1
DMAVM down_sha=feed down_bytes=2097152 down_secs=1.5
DMAVM up_secs=2.25 up_ok=1
DMAVM bt_net_end=02:aa:bb:cc:dd:01 status=0
DMAVM bt_net=02:aa:bb:cc:dd:02 host=169.254.11.1 iface=none
DMAVM bt_net_end=02:aa:bb:cc:dd:02 status=1
DMAVM bt_dmar_units=1 structures=0000[00:01.0,00:03.0];0001[all]
DMAVM bt_klog_bad=1
DMAVM bt_done=1
DMAVM check=boot-test status=0
dmavm: stats: disk0: endpoint 0x10000: domain 1, 12 map, 11 unmap, 40 translations, 2 IOTLB misses, 1 faults, 0 refused attach
dmavm: stats: rng0: dmar1 source-id 00:03.0: domain none, 7 translations, 2 IOTLB misses, 1 context-cache misses, 4 invalidations, 0 faults, 5 untranslated (translation off)
dmavm: stats: 3 fault reports dropped (the guest posted no event buffers)
dmavm: error: guest triple fault
";

    #[test]
    fn reads_every_line_kind() {
        let o = Observed::parse(SAMPLE);
        assert!(o.init && o.done);
        assert_eq!(o.kernel.as_deref(), Some("6.12.57+deb13-cloud-amd64"));
        assert_eq!(o.insmod_failed, ["virtio-iommu"]);
        assert_eq!(o.drivers, Some(vec!["virtio_blk".into(), "virtio_console".into(), "virtio-pci".into()]));
        assert_eq!(Observed::parse("DMAVM bt_drivers=-\n").drivers, Some(vec![]));
        assert_eq!(o.virtio.len(), 2);
        assert_eq!(o.virtio[0].device, 0x17);
        assert_eq!((o.virtio[0].group.as_deref(), o.virtio[0].addr), (None, None));
        assert_eq!(o.virtio[1].addr, Some(0xd000_0000));
        assert_eq!(o.virtio[1].group.as_deref(), Some("1"));
        assert_eq!(o.virtio[1].driver.as_deref(), Some("virtio_blk"));
        assert!(o.virtio[1].feature(33) && !o.virtio[1].feature(32) && !o.virtio[1].feature(99));
        assert_eq!(o.disks[0].readback.as_deref(), Some("def"));
        assert_eq!((o.disks[0].write_refused, o.disks[1].write_refused), (None, Some(true)));
        assert!(o.disks[1].readonly && o.disks[1].readback.is_none());
        assert_eq!(o.rngs, [("virtio_rng.0".to_string(), 65536)]);
        assert_eq!(
            (o.consoles.as_slice(), o.console_lines.as_slice()),
            (&["hvc0".to_string()][..], &["hvc0".to_string()][..])
        );
        assert_eq!(o.klog, ["[    2.1] WARNING: CPU: 0 PID: 1 at x"]);
        assert_eq!((o.klog_bad, o.check_status), (Some(1), Some(0)));
        assert_eq!(
            o.stats,
            [
                (
                    "disk0".to_string(),
                    Counters { map: 12, translations: 40, faults: 1, refused_attach: 0, untranslated: 0 }
                ),
                (
                    "rng0".to_string(),
                    Counters { map: 0, translations: 7, faults: 0, refused_attach: 0, untranslated: 5 }
                )
            ]
        );
        assert_eq!(o.dmar_units, Some(1));
        assert_eq!(o.dmar.as_deref(), Some("0000[00:01.0,00:03.0];0001[all]"));
        assert_eq!(o.dropped_faults, 3);
        assert_eq!(
            o.coherency,
            [SeenCoherency {
                serial: "disk0".into(),
                sync_for_device: 12,
                sync_for_cpu: 7,
                prot: "normal,normal-nc".into()
            }]
        );
        assert!(o.coherency[0].non_cacheable());
        assert_eq!(o.vmm_errors, ["guest triple fault"]);
        assert_eq!(
            o.nets,
            [
                SeenNet {
                    mac: "02:aa:bb:cc:dd:01".into(),
                    iface: Some("eth0".into()),
                    driver: Some("virtio_net".into()),
                    carrier: Some(true),
                    ping: Some(true),
                    down_sha: Some("feed".into()),
                    down_bytes: Some(2 << 20),
                    down_secs: Some(1.5),
                    up_ok: Some(true),
                    up_secs: Some(2.25),
                    status: Some(0),
                },
                SeenNet { mac: "02:aa:bb:cc:dd:02".into(), status: Some(1), ..SeenNet::default() },
            ]
        );
    }

    #[test]
    fn a_failed_download_and_lines_outside_an_exchange() {
        // The exchange's keys mean nothing before the first bt_net line.
        let o = Observed::parse("DMAVM ping=1\nDMAVM bt_net=m host=h iface=eth1\nDMAVM ping=0\nDMAVM down_sha=- down_bytes=0 down_secs=10\nDMAVM up_secs=0 up_ok=0\n");
        assert_eq!(o.nets.len(), 1);
        let n = &o.nets[0];
        assert_eq!(
            (n.ping, n.down_sha.as_deref(), n.down_bytes, n.up_ok),
            (Some(false), None, Some(0), Some(false))
        );
        assert_eq!(n.status, None, "the exchange did not end");
    }

    #[test]
    fn a_panic_before_init() {
        let o = Observed::parse(
            "[ 1.0] Kernel panic - not syncing: Requested init /nonexistent failed (error -2).\n",
        );
        assert!(!o.init && !o.done);
        assert_eq!(
            o.panic.as_deref(),
            Some("Kernel panic - not syncing: Requested init /nonexistent failed (error -2).")
        );
        assert_eq!(Observed::parse(""), Observed::default());
    }
}
