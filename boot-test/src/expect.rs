//! What the guest should see, derived from the machine model: each virtio
//! device where the model places it, whether an IOMMU translates it and
//! whether it offers `VIRTIO_F_ACCESS_PLATFORM`.

use std::fmt;

use std::net::Ipv4Addr;

use dmavm_machine::mac::MacAddress;
use dmavm_machine::options::MixedCoherency;
use dmavm_machine::{DeviceKind, Machine, Placement, VtdScope};

/// Where the guest finds a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A PCI function, as sysfs names it (`0001:00:02.0`).
    Pci(String),
    /// A virtio-mmio window, by its base (the guest's `LNRO0005:NN` device
    /// whose /proc/iomem range starts there).
    Mmio(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Pci(bdf) => write!(f, "{bdf}"),
            Location::Mmio(base) => write!(f, "virtio-mmio {base:#x}"),
        }
    }
}

impl Location {
    /// The name of the guest's driver of its virtio transport
    /// (/sys/bus/pci/drivers, /sys/bus/platform/drivers).
    pub fn transport_driver(&self) -> &'static str {
        match self {
            Location::Pci(_) => "virtio-pci",
            Location::Mmio(_) => "virtio-mmio",
        }
    }
}

/// What a device is, as far as the guest's checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// virtio-blk; read-only or not.
    Disk {
        /// Whether writes must be refused.
        readonly: bool,
    },
    /// virtio-net.
    Net,
    /// virtio-rng.
    Rng,
    /// virtio-console.
    Console,
    /// virtio-iommu.
    Iommu,
}

impl Kind {
    /// The virtio device ID (virtio 1.2, 5).
    pub fn virtio_id(self) -> u32 {
        match self {
            Kind::Net => 1,
            Kind::Disk { .. } => 2,
            Kind::Console => 3,
            Kind::Rng => 4,
            Kind::Iommu => 23,
        }
    }

    /// The name of its guest driver on the virtio bus
    /// (/sys/bus/virtio/drivers).
    pub fn driver(self) -> &'static str {
        match self {
            Kind::Disk { .. } => "virtio_blk",
            Kind::Net => "virtio_net",
            Kind::Console => "virtio_console",
            Kind::Rng => "virtio_rng",
            Kind::Iommu => "virtio_iommu",
        }
    }

    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Disk { .. } => "virtio-blk",
            Kind::Net => "virtio-net",
            Kind::Console => "virtio-console",
            Kind::Rng => "virtio-rng",
            Kind::Iommu => "virtio-iommu",
        }
    }
}

/// One device the guest should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDevice {
    /// Its id (a disk's serial).
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// Where it is.
    pub location: Location,
    /// Whether an IOMMU translates it: then it must be in an IOMMU group.
    pub translated: bool,
    /// Whether it offers (and so the guest negotiates) ACCESS_PLATFORM.
    pub access_platform: bool,
    /// Whether its DMA is cache-coherent (on PCI, its bridge's).
    pub coherent: bool,
}

/// Everything one run checks the guest against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// Every virtio device, the IOMMU included.
    pub devices: Vec<ExpectedDevice>,
    /// Whether the guest's DMA set-up is checked against each device's
    /// coherency (arm64, where a non-coherent device needs cache
    /// maintenance; x86 DMA is always coherent).
    pub coherency: bool,
    /// Whether the IOMMU may refuse an ATTACH (mixed-coherency=reject on a
    /// machine whose translated devices differ in coherency).
    pub refused_attach_allowed: bool,
    /// The Intel VT-d units of a `--iommu type=vtd` machine, which the
    /// guest's intel-iommu driver must register.
    pub vtd: Option<ExpectedVtd>,
    /// The links of the network devices, which the `net` check exchanges
    /// a block over (none: no `net` check).
    pub nets: Vec<NetLink>,
}

/// One network device of a run and its end of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetLink {
    /// The device id.
    pub id: String,
    /// Its MAC, as the guest's sysfs spells it.
    pub mac: String,
    /// The TAP made for it.
    pub tap: String,
    /// The peer's address on the TAP.
    pub host: Ipv4Addr,
    /// The address the guest takes.
    pub guest: Ipv4Addr,
}

/// The links of `machine`'s network devices, in device order (the order
/// the guest is told the MACs in, which gives each its subnet).
pub fn links(machine: &Machine) -> Vec<NetLink> {
    machine
        .devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::Net { mac, .. } => Some((d.id.clone(), MacAddress::or_generated(*mac, &d.id))),
            _ => None,
        })
        .enumerate()
        .map(|(i, (id, mac))| {
            // 169.254.10.0/24 upwards: link-local only; a machine has far
            // fewer than 246 devices.
            let subnet = 10 + i.min(245) as u8;
            NetLink {
                id,
                mac: mac.to_string(),
                tap: format!("btnet{i}"),
                host: Ipv4Addr::new(169, 254, subnet, 1),
                guest: Ipv4Addr::new(169, 254, subnet, 2),
            }
        })
        .collect()
}

/// What the guest of a VT-d machine should find in its firmware and
/// register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedVtd {
    /// Units (DRHDs).
    pub units: u64,
    /// The DMAR's remapping structures as the guest's check prints them:
    /// per DRHD its segment and device scope, `SSSS[bb:dd.f,...]` or
    /// `SSSS[all]` (INCLUDE_PCI_ALL), `;`-separated; `none` when no
    /// device is translated (no DMAR).
    pub dmar: String,
}

impl ExpectedVtd {
    fn of(machine: &Machine) -> Option<Self> {
        machine.vtd.as_ref()?;
        let units = machine.vtd_units();
        let drhds: Vec<String> = units
            .iter()
            .map(|u| {
                let scope = match &u.scope {
                    VtdScope::WholeSegment => "all".to_string(),
                    VtdScope::Functions(list) => list
                        .iter()
                        .map(|bdf| format!("{:02x}:{:02x}.{}", bdf >> 8, (bdf >> 3) & 0x1f, bdf & 7))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                format!("{:04x}[{scope}]", u.segment)
            })
            .collect();
        let dmar = if drhds.is_empty() { "none".to_string() } else { drhds.join(";") };
        Some(Self { units: units.len() as u64, dmar })
    }
}

impl Expectations {
    /// What a guest of `machine` should see.
    pub fn of(machine: &Machine) -> Self {
        let devices = machine
            .devices
            .iter()
            .map(|d| ExpectedDevice {
                id: d.id.clone(),
                kind: match d.kind {
                    DeviceKind::Disk { readonly, .. } => Kind::Disk { readonly },
                    DeviceKind::Net { .. } => Kind::Net,
                    DeviceKind::Rng => Kind::Rng,
                    DeviceKind::Console => Kind::Console,
                    DeviceKind::Iommu => Kind::Iommu,
                },
                location: match d.placement {
                    Placement::Pci { segment, slot } => {
                        Location::Pci(format!("{segment:04x}:00:{slot:02x}.0"))
                    }
                    Placement::Mmio { window } => {
                        Location::Mmio(machine.mmio_window(window).map_or(0, |w| w.base))
                    }
                },
                translated: d.dma.endpoint().is_some(),
                access_platform: d.dma.offers_access_platform(),
                coherent: d.coherent,
            })
            .collect();
        let translated: Vec<bool> =
            machine.devices.iter().filter(|d| d.dma.endpoint().is_some()).map(|d| d.coherent).collect();
        let mixed = translated.iter().any(|&c| c) && translated.iter().any(|&c| !c);
        Self {
            devices,
            coherency: machine.arch == dmavm_machine::Arch::Aarch64,
            refused_attach_allowed: machine.mixed_coherency == MixedCoherency::Reject && mixed,
            vtd: ExpectedVtd::of(machine),
            nets: links(machine),
        }
    }

    /// The guest drivers the devices need, transports first, in order.
    pub fn drivers(&self) -> Vec<&'static str> {
        let mut need = Vec::new();
        for d in &self.devices {
            for name in [d.location.transport_driver(), d.kind.driver()] {
                if !need.contains(&name) {
                    need.push(name);
                }
            }
        }
        need
    }

    /// The devices of one kind.
    pub fn count(&self, pred: impl Fn(Kind) -> bool) -> usize {
        self.devices.iter().filter(|d| pred(d.kind)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmavm_machine::options::{parse_bridge, parse_console, parse_disk, parse_iommu, parse_rng};
    use dmavm_machine::test_utils::new_machine;

    #[test]
    fn translated_bypassed_and_placed_as_the_model_says() {
        let bridges = [parse_bridge("id=fast,direct-ram-access=on").unwrap()];
        let disks = [
            parse_disk("path=a,transport=pci,id=rand").unwrap(),
            parse_disk("path=b,transport=pci,bridge=fast").unwrap(),
            parse_disk("path=c,readonly=on,direct-ram-access=on").unwrap(),
            parse_disk("path=d").unwrap(),
        ];
        let m = new_machine(
            &bridges,
            &disks,
            &[parse_rng("").unwrap()],
            Some(&parse_console("transport=pci").unwrap()),
            Some(&parse_iommu("").unwrap()),
        )
        .unwrap();
        let e = Expectations::of(&m);
        let rows: Vec<(&str, Kind, String, bool, bool)> = e
            .devices
            .iter()
            .map(|d| (d.id.as_str(), d.kind, d.location.to_string(), d.translated, d.access_platform))
            .collect();
        assert_eq!(
            rows,
            [
                ("iommu0", Kind::Iommu, "0000:00:01.0".to_string(), false, false),
                ("rand", Kind::Disk { readonly: false }, "0000:00:02.0".into(), true, true),
                ("disk1", Kind::Disk { readonly: false }, "0001:00:01.0".into(), false, false),
                ("disk2", Kind::Disk { readonly: true }, "virtio-mmio 0xd0000000".into(), false, false),
                ("disk3", Kind::Disk { readonly: false }, "virtio-mmio 0xd0001000".into(), true, true),
                ("rng0", Kind::Rng, "virtio-mmio 0xd0002000".into(), true, true),
                ("console0", Kind::Console, "0000:00:03.0".into(), true, true),
            ]
        );
        assert!(!e.refused_attach_allowed);
        assert_eq!(e.count(|k| matches!(k, Kind::Disk { .. })), 4);
        assert_eq!(Kind::Iommu.virtio_id(), 23);

        // No IOMMU: nothing translated, ACCESS_PLATFORM still offered by
        // default (the guest's DMA API with an identity mapping).
        let m = new_machine(&[], &disks[..1], &[], None, None).unwrap();
        let e = Expectations::of(&m);
        assert!(!e.devices[0].translated && e.devices[0].access_platform);
        assert_eq!(e.vtd, None);
    }

    #[test]
    fn a_vtd_machine_expects_its_drhds() {
        // pci0: rand 00:01.0 translated, ro 00:02.0 bypassing, rng0 00:03.0
        // translated; bridge hp (segment 1) hot-pluggable: the whole segment;
        // bridge fast (segment 2) bypassing: no DRHD.
        let bridges = [
            parse_bridge("id=hp,hotplug=on").unwrap(),
            parse_bridge("id=fast,direct-ram-access=on").unwrap(),
        ];
        let disks = [
            parse_disk("path=a,transport=pci,id=rand").unwrap(),
            parse_disk("path=b,transport=pci,id=ro,readonly=on,direct-ram-access=on").unwrap(),
            parse_disk("path=c,transport=pci,bridge=fast").unwrap(),
        ];
        let rng = [parse_rng("transport=pci").unwrap()];
        let vtd = parse_iommu("type=vtd").unwrap();
        let m = new_machine(&bridges, &disks, &rng, None, Some(&vtd)).unwrap();
        let e = Expectations::of(&m);
        assert_eq!(
            e.vtd,
            Some(ExpectedVtd { units: 2, dmar: "0000[00:01.0,00:03.0];0001[all]".into() }),
            "{:?}",
            e.devices
        );
        let translated: Vec<&str> =
            e.devices.iter().filter(|d| d.translated).map(|d| d.id.as_str()).collect();
        assert_eq!(translated, ["rand", "rng0"]);
        // No translated device: no DRHD, so no DMAR.
        let m = new_machine(&[], &disks[1..2], &[], None, Some(&vtd)).unwrap();
        assert_eq!(Expectations::of(&m).vtd, Some(ExpectedVtd { units: 0, dmar: "none".into() }));
    }

    #[test]
    fn every_network_device_gets_a_link_of_its_own() {
        let m = dmavm_machine::test_utils::machine_for(
            dmavm_machine::Arch::X86_64,
            &[
                "--disk",
                "path=a",
                "--net",
                "tap=p,id=a",
                "--net",
                "tap=p,id=b,mac=02:00:5e:10:00:01,transport=pci",
            ],
        );
        let e = Expectations::of(&m);
        let links: Vec<(&str, &str, &str, String, String)> = e
            .nets
            .iter()
            .map(|l| (l.id.as_str(), l.mac.as_str(), l.tap.as_str(), l.host.to_string(), l.guest.to_string()))
            .collect();
        let generated = MacAddress::generated("a").to_string();
        assert_eq!(
            links,
            [
                ("a", generated.as_str(), "btnet0", "169.254.10.1".into(), "169.254.10.2".into()),
                ("b", "02:00:5e:10:00:01", "btnet1", "169.254.11.1".into(), "169.254.11.2".into()),
            ]
        );
        // Link-local only, whatever the count.
        assert!(e.nets.iter().all(|l| l.host.is_link_local() && l.guest.is_link_local()));
        assert_eq!(e.count(|k| k == Kind::Net), 2);
        assert!(Expectations::of(&new_machine(&[], &[], &[], None, None).unwrap()).nets.is_empty());
    }

    #[test]
    fn refused_attach_only_under_reject_with_mixed_coherency() {
        let bridges = [parse_bridge("id=nc,coherent=off").unwrap()];
        let disks = [
            parse_disk("path=a,transport=pci").unwrap(),
            parse_disk("path=b,transport=pci,bridge=nc").unwrap(),
        ];
        let reject = parse_iommu("mixed-coherency=reject").unwrap();
        let m = new_machine(&bridges, &disks, &[], None, Some(&reject)).unwrap();
        assert!(Expectations::of(&m).refused_attach_allowed);
        let m = new_machine(&bridges, &disks, &[], None, Some(&parse_iommu("").unwrap())).unwrap();
        assert!(!Expectations::of(&m).refused_attach_allowed);
        let m = new_machine(&bridges, &disks[..1], &[], None, Some(&reject)).unwrap();
        assert!(!Expectations::of(&m).refused_attach_allowed);
    }
}
