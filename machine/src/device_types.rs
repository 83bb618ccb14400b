//! The virtio device types a machine can have besides the IOMMU: what
//! each is ([`DeviceKind`]) and its one registry entry ([`DEVICE_TYPES`]):
//! its option and config-file table, its keys, whether a machine may have
//! several, and its parser. The config file reads every registered type
//! from this table; the command line has one option per entry; the
//! machine places devices type by type in the table's order.

use std::path::PathBuf;

use crate::mac::MacAddress;
use crate::options::{
    attach_only_from_pairs, disk_from_pairs, net_from_pairs, DeviceOptions, OptionError, Pairs, ATTACH_KEYS,
    DISK_KEYS, NET_KEYS,
};

/// One registered virtio device type.
#[derive(Debug)]
pub struct DeviceType {
    /// Its option (`--disk`) and config-file table (`[[disk]]`).
    pub option: &'static str,
    /// The keys it takes.
    pub keys: &'static [&'static str],
    /// Whether a machine may have several (`--disk` repeated, `[[disk]]`)
    /// or at most one (`--console`, `[console]`).
    pub many: bool,
    /// Its options from `key=value` pairs.
    pub parse: fn(Pairs<'_>) -> Result<DeviceOptions, OptionError>,
}

/// Every virtio device type but the IOMMU, in the order a machine places
/// them (after the IOMMU): disks, network devices, RNGs, the console.
pub const DEVICE_TYPES: &[DeviceType] = &[
    DeviceType { option: "disk", keys: DISK_KEYS, many: true, parse: disk_from_pairs },
    DeviceType { option: "net", keys: NET_KEYS, many: true, parse: net_from_pairs },
    DeviceType { option: "rng", keys: ATTACH_KEYS, many: true, parse: rng_from_pairs },
    DeviceType { option: "console", keys: ATTACH_KEYS, many: false, parse: console_from_pairs },
];

/// The registered type of option `option`.
pub fn device_type(option: &str) -> Option<&'static DeviceType> {
    DEVICE_TYPES.iter().find(|t| t.option == option)
}

fn rng_from_pairs(pairs: Pairs<'_>) -> Result<DeviceOptions, OptionError> {
    Ok(DeviceOptions { kind: DeviceKind::Rng, attach: attach_only_from_pairs(pairs)? })
}

fn console_from_pairs(pairs: Pairs<'_>) -> Result<DeviceOptions, OptionError> {
    Ok(DeviceOptions { kind: DeviceKind::Console, attach: attach_only_from_pairs(pairs)? })
}

/// What a device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk over a raw file.
    Disk {
        /// Backing file.
        path: PathBuf,
        /// Whether the guest may write.
        readonly: bool,
    },
    /// virtio-net on a host TAP interface.
    Net {
        /// The TAP interface's name.
        tap: String,
        /// The MAC address given (`mac=`); `None`: generated from the
        /// device's id ([`MacAddress::or_generated`]).
        mac: Option<MacAddress>,
    },
    /// virtio-rng.
    Rng,
    /// virtio-console on dmavm's stdio.
    Console,
    /// The virtio-iommu.
    Iommu,
}

impl DeviceKind {
    /// Its option and config-file table (`--disk`, `[[disk]]`), which is
    /// also how its unnamed devices are named (`disk0`, `disk1`).
    pub fn option(&self) -> &'static str {
        match self {
            DeviceKind::Disk { .. } => "disk",
            DeviceKind::Net { .. } => "net",
            DeviceKind::Rng => "rng",
            DeviceKind::Console => "console",
            DeviceKind::Iommu => "iommu",
        }
    }

    /// Its entry in [`DEVICE_TYPES`] (none for the IOMMU, which has
    /// options of its own).
    pub fn device_type(&self) -> Option<(usize, &'static DeviceType)> {
        DEVICE_TYPES.iter().enumerate().find(|(_, t)| t.option == self.option())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{parse_device, MachineOptions};
    use crate::test_utils::TEST_MEMORY;
    use crate::{Arch, Machine};

    #[test]
    fn every_kind_but_the_iommu_is_registered_once() {
        let kinds = [
            DeviceKind::Disk { path: PathBuf::from("d"), readonly: false },
            DeviceKind::Net { tap: "tap0".into(), mac: None },
            DeviceKind::Rng,
            DeviceKind::Console,
        ];
        for kind in &kinds {
            let (_, t) = kind.device_type().unwrap_or_else(|| panic!("{kind:?} has no registry entry"));
            assert_eq!(t.option, kind.option());
        }
        assert!(DeviceKind::Iommu.device_type().is_none());
        let mut names: Vec<&str> = DEVICE_TYPES.iter().map(|t| t.option).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEVICE_TYPES.len(), "option names are unique");
        // Each entry's parser makes its own kind.
        for t in DEVICE_TYPES {
            let text = if t.keys.contains(&"path") {
                "path=x"
            } else if t.keys.contains(&"tap") {
                "tap=tap0"
            } else {
                ""
            };
            let d = parse_device(t.option, text).unwrap();
            assert_eq!(d.kind.option(), t.option);
        }
        assert!(parse_device("floppy", "").unwrap_err().contains("no virtio device type is called 'floppy'"));
    }

    #[test]
    fn devices_are_placed_type_by_type_whatever_the_option_order() {
        let interleaved = ["rng:", "net:tap=t0", "disk:path=a", "console:", "rng:id=r2", "disk:path=b"];
        let devices = interleaved
            .iter()
            .map(|s| {
                let (option, keys) = s.split_once(':').unwrap();
                parse_device(option, keys).unwrap()
            })
            .collect();
        let options = MachineOptions { devices, ..MachineOptions::new(1, TEST_MEMORY) };
        let m = Machine::new(&options, Arch::X86_64).unwrap();
        let ids: Vec<&str> = m.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["disk0", "disk1", "net0", "rng0", "r2", "console0"]);
    }
}
