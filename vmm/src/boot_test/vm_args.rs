//! The `dmavm run` command line of one run: the machine model written back
//! as options, every device with its place and DMA properties spelled out,
//! so that the VM the child process builds is exactly the model the
//! harness derived its expectations from.

use std::path::Path;

use super::model::{Device, DeviceKind, Machine, MixedCoherency, Placement};

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
    format!(
        "id={},{},coherent={},direct-ram-access={}",
        d.id,
        place(machine, d.placement),
        on_off(d.coherent),
        on_off(!d.dma.offers_access_platform())
    )
}

/// The machine options of `dmavm run` that rebuild `machine` (disks with
/// the paths in the model).
pub fn machine_args(machine: &Machine, cpus: u32, memory: u64) -> Vec<String> {
    let mut args =
        vec!["--cpus".to_string(), cpus.to_string(), "--memory".into(), format!("{}K", memory >> 10)];
    for b in &machine.bridges {
        args.push("--pci-bridge".into());
        args.push(format!(
            "id={},coherent={},direct-ram-access={},hotplug={}",
            b.id,
            on_off(b.coherent),
            on_off(b.direct_ram_access),
            on_off(b.hotplug)
        ));
    }
    for d in &machine.devices {
        match &d.kind {
            DeviceKind::Iommu => {
                let policy = match machine.mixed_coherency {
                    MixedCoherency::Allow => "allow",
                    MixedCoherency::Reject => "reject",
                };
                args.push("--iommu".into());
                args.push(format!("id={},{},mixed-coherency={policy}", d.id, place(machine, d.placement)));
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

#[cfg(test)]
mod tests {
    use super::super::model::options::{parse_bridge, parse_disk, parse_iommu, parse_simple, Cli, Command};
    use super::*;
    use clap::Parser;
    use dmavm_machine::test_utils::new_machine;

    fn rebuilt(args: &[String]) -> Machine {
        let mut argv = vec!["dmavm".to_string(), "run".into(), "--payload".into(), "p".into()];
        argv.extend(args.iter().cloned());
        let cli = Cli::try_parse_from(&argv).unwrap();
        let Command::Run(r) = cli.command else { panic!("not run") };
        Machine::new(&r.machine.options(), dmavm_machine::Arch::X86_64).unwrap()
    }

    #[test]
    fn the_options_rebuild_the_same_machine() {
        let bridges = [
            parse_bridge("id=fast,direct-ram-access=on").unwrap(),
            parse_bridge("id=slow,coherent=off").unwrap(),
        ];
        let disks = [
            parse_disk("path=/a.img,transport=pci").unwrap(),
            parse_disk("path=/b.img,transport=pci,bridge=fast").unwrap(),
            parse_disk("path=/c.img,readonly=on,direct-ram-access=on").unwrap(),
            parse_disk("path=/d.img,transport=pci,bridge=slow,id=data").unwrap(),
        ];
        let rngs = [parse_simple("transport=pci").unwrap()];
        let console = parse_simple("").unwrap();
        let iommu = parse_iommu("mixed-coherency=reject").unwrap();
        let m = new_machine(&bridges, &disks, &rngs, Some(&console), Some(&iommu)).unwrap();
        let args = machine_args(&m, 2, 256 << 20);
        assert_eq!(args[..4], ["--cpus", "2", "--memory", "262144K"]);
        assert_eq!(rebuilt(&args), Machine { cpus: 2, memory: 256 << 20, ..m.clone() });
        let m = with_images(&m, Path::new("/tmp/run1"));
        assert!(
            matches!(&m.devices[1].kind, DeviceKind::Disk { path, .. } if path == Path::new("/tmp/run1/disk0.img"))
        );
        assert_eq!(rebuilt(&machine_args(&m, 1, 64 << 20)), Machine { cpus: 1, memory: 64 << 20, ..m });
        let plain = new_machine(&[], &[], &[], None, None).unwrap();
        assert_eq!(rebuilt(&machine_args(&plain, 1, 64 << 20)), Machine { memory: 64 << 20, ..plain });
    }
}
