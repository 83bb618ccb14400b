//! The `dmavm run` command line of one run: the machine model written back
//! as options, every device with its place and DMA properties spelled out,
//! so that the VM the child process builds is exactly the model the
//! harness derived its expectations from.

use std::path::Path;

use dmavm_machine::options::MixedCoherency;
use dmavm_machine::{Device, DeviceKind, Machine, Placement, PoolOwner};

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `transport=...,bridge=...,slot=...` or `transport=mmio,addr=...`.
fn place(machine: &Machine, placement: Placement) -> String {
    match placement {
        Placement::Mmio { window } => match machine.mmio_window(window) {
            Some(w) => format!("transport=mmio,addr={:#x}", w.base),
            None => "transport=mmio".into(),
        },
        Placement::Pci { segment, slot } => {
            let bridge = machine.bridge(segment).map_or("pci0", |b| b.id.as_str());
            format!("transport=pci,bridge={bridge},slot={slot}")
        }
    }
}

fn device_keys(machine: &Machine, d: &Device) -> String {
    // A device confined to a pool leaves direct-ram-access out: asking for
    // off would put it in the IOMMU's scope (DMA011).
    let dma = match (d.dma.pool(), d.pool.filter(|p| p.owner == PoolOwner::Device)) {
        (Some(_), Some(own)) => format!("dma-pool={}K", own.size >> 10),
        (Some(_), None) => String::new(),
        (None, _) => format!("direct-ram-access={}", on_off(!d.dma.offers_access_platform())),
    };
    let dma = if dma.is_empty() { dma } else { format!(",{dma}") };
    format!("id={},{},coherent={}{dma}", d.id, place(machine, d.placement), on_off(d.coherent))
}

/// The machine options of `dmavm run` that rebuild `machine` (disks with
/// the paths in the model).
pub fn machine_args(machine: &Machine, cpus: u32, memory: u64) -> Vec<String> {
    let mut args =
        vec!["--cpus".to_string(), cpus.to_string(), "--memory".into(), format!("{}K", memory >> 10)];
    for b in &machine.bridges {
        args.push("--pci-bridge".into());
        let pool = b.dma_pool.map_or_else(String::new, |p| format!(",dma-pool={}K", p.size >> 10));
        args.push(format!(
            "id={},coherent={},direct-ram-access={},hotplug={}{pool}",
            b.id,
            on_off(b.coherent),
            on_off(b.direct_ram_access),
            on_off(b.hotplug)
        ));
    }
    if let Some(vtd) = &machine.vtd {
        args.push("--iommu".into());
        args.push(format!("type=vtd,coherent={}", on_off(vtd.coherent)));
    }
    for d in &machine.devices {
        match &d.kind {
            DeviceKind::Iommu => {
                let policy = match machine.mixed_coherency {
                    MixedCoherency::Allow => "allow",
                    MixedCoherency::Reject => "reject",
                };
                args.push("--iommu".into());
                args.push(format!(
                    "id={},{},mixed-coherency={policy},boot-bypass={}",
                    d.id,
                    place(machine, d.placement),
                    on_off(machine.boot_bypass)
                ));
            }
            DeviceKind::Disk { path, readonly } => {
                args.push("--disk".into());
                args.push(format!(
                    "path={},readonly={},{}",
                    path.display(),
                    on_off(*readonly),
                    device_keys(machine, d)
                ));
            }
            DeviceKind::Net { tap, mac } => {
                args.push("--net".into());
                let mac = mac.map(|m| format!("mac={m},")).unwrap_or_default();
                args.push(format!("tap={tap},{mac}{}", device_keys(machine, d)));
            }
            DeviceKind::Rng => {
                args.push("--rng".into());
                args.push(device_keys(machine, d));
            }
            DeviceKind::Console => {
                args.push("--console".into());
                args.push(device_keys(machine, d));
            }
        }
    }
    args
}

/// The test-only options of a run (`--test-dt-flip-coherent`).
pub fn test_args(spec: &crate::matrix::RunSpec) -> Vec<String> {
    spec.dt_flip_coherent.iter().flat_map(|id| ["--test-dt-flip-coherent".to_string(), id.clone()]).collect()
}

/// The model with each disk's image at `dir/<id>.img`.
pub fn with_images(machine: &Machine, dir: &Path) -> Machine {
    let mut m = machine.clone();
    for d in &mut m.devices {
        if let DeviceKind::Disk { path, .. } = &mut d.kind {
            *path = dir.join(format!("{}.img", d.id));
        }
    }
    m
}

/// The model with each network device on the TAP made for its link.
pub fn with_taps(machine: &Machine, links: &[crate::expect::NetLink]) -> Machine {
    let mut m = machine.clone();
    for d in &mut m.devices {
        if let (DeviceKind::Net { tap, .. }, Some(link)) = (&mut d.kind, links.iter().find(|l| l.id == d.id))
        {
            *tap = link.tap.clone();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    // That these options rebuild the same machine through `dmavm run`'s
    // command line is tested where that command line is: vmm/src/cli.rs.
    use super::*;
    use dmavm_machine::options::{parse_disk, parse_iommu};
    use dmavm_machine::test_utils::new_machine;

    #[test]
    fn a_vtd_machine_says_so() {
        let disks = [parse_disk("path=/a.img,transport=pci").unwrap()];
        let iommu = parse_iommu("type=vtd,coherent=off").unwrap();
        let m = new_machine(&[], &disks, &[], None, Some(&iommu)).unwrap();
        let args = machine_args(&m, 1, 64 << 20);
        let iommus: Vec<&[String]> = args.windows(2).filter(|w| w[0] == "--iommu").collect();
        assert_eq!(iommus, [["--iommu".to_string(), "type=vtd,coherent=off".to_string()]]);
    }

    #[test]
    fn every_device_is_spelled_out() {
        let disks = [parse_disk("path=/a.img,transport=pci,id=data").unwrap()];
        let iommu = parse_iommu("mixed-coherency=reject").unwrap();
        let m = new_machine(&[], &disks, &[], None, Some(&iommu)).unwrap();
        let args = machine_args(&m, 2, 256 << 20);
        assert_eq!(args[..4], ["--cpus", "2", "--memory", "262144K"]);
        assert!(
            args.windows(2).any(|w| w[0] == "--iommu" && w[1].contains("mixed-coherency=reject")),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w[0] == "--disk"
                && w[1].starts_with("path=/a.img,readonly=off,id=data,transport=pci,bridge=pci0,slot=")),
            "{args:?}"
        );
    }

    #[test]
    fn each_disk_gets_its_image_in_the_run_folder() {
        let disks = [parse_disk("path=/a.img,transport=pci").unwrap()];
        let m = with_images(&new_machine(&[], &disks, &[], None, None).unwrap(), Path::new("/tmp/run1"));
        assert!(m.devices.iter().any(
            |d| matches!(&d.kind, DeviceKind::Disk { path, .. } if path == Path::new("/tmp/run1/disk0.img"))
        ));
    }
}
