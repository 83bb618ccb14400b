//! What the ACPI tables declare about the machine's devices and host
//! bridges (the VIOT is in [`super::scope`]).

use anyhow::Result;
use dmavm_acpi::{PciRoot, VirtioMmioDevice};

use super::{Machine, PciBridge, Placement};
use crate::layout::{PciSegmentWindows, VIRTIO_MMIO_SIZE};

impl Machine {
    /// The virtio-mmio devices as the ACPI tables declare them.
    pub fn acpi_virtio_mmio(&self) -> Vec<VirtioMmioDevice> {
        self.devices
            .iter()
            .filter_map(|d| match d.placement {
                Placement::Mmio { base, gsi } => Some(VirtioMmioDevice {
                    base: base as u32,
                    size: VIRTIO_MMIO_SIZE as u32,
                    gsi,
                    coherent: d.coherent,
                }),
                Placement::Pci { .. } => None,
            })
            .collect()
    }

    /// Every host bridge with where its segment decodes, in segment order.
    pub fn pci_segments(&self, memory: u64) -> Result<Vec<(&PciBridge, PciSegmentWindows)>> {
        self.bridges.iter().map(|b| Ok((b, b.windows(memory)?))).collect()
    }

    /// The PCI host bridges as the ACPI tables declare them: one root per
    /// segment with its bus range (segment 0: 256 buses, the others bus 0
    /// only), ECAM, windows and coherency. There is always at least `pci0`
    /// (without a host bridge a guest probes for PCI and complains).
    pub fn acpi_pci_roots(&self, memory: u64) -> Result<Vec<PciRoot>> {
        self.pci_segments(memory)?
            .into_iter()
            .map(|(bridge, w)| {
                Ok(PciRoot {
                    segment: bridge.segment,
                    bus_start: 0,
                    bus_end: u8::try_from(w.buses() - 1)?,
                    ecam_base: w.ecam.start,
                    mem32: (u32::try_from(w.mem32.start)?, u32::try_from(w.mem32.end - w.mem32.start)?),
                    mem64: (w.mem64.start, w.mem64.end - w.mem64.start),
                    coherent: bridge.coherent,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_options::{parse_bridge, parse_disk, parse_simple};

    #[test]
    fn mmio_devices_declare_their_window_and_coherency() {
        let disks = [parse_disk("path=a").unwrap(), parse_disk("path=b,coherent=off,id=data").unwrap()];
        let m = Machine::new(&[], &disks, &[parse_simple("").unwrap()], None, None).unwrap();
        let acpi = m.acpi_virtio_mmio();
        assert_eq!(acpi[1], VirtioMmioDevice { base: 0xd000_1000, size: 0x200, gsi: 6, coherent: false });
    }

    #[test]
    fn one_bridge_is_the_machine_of_before() {
        let roots = Machine::new(&[], &[], &[], None, None).unwrap().acpi_pci_roots(1 << 30).unwrap();
        assert_eq!(
            roots,
            [PciRoot {
                segment: 0,
                bus_start: 0,
                bus_end: 0xff,
                ecam_base: 0xe000_0000,
                mem32: (0xc000_0000, 0x1000_0000),
                mem64: (4 << 30, 32 << 30),
                coherent: true,
            }]
        );
    }

    #[test]
    fn one_root_per_bridge_with_its_own_coherency() {
        let b = [parse_bridge("id=slow,coherent=off").unwrap(), parse_bridge("id=x").unwrap()];
        let roots = Machine::new(&b, &[], &[], None, None).unwrap().acpi_pci_roots(1 << 30).unwrap();
        assert_eq!(roots.len(), 3);
        assert_eq!(
            roots[1],
            PciRoot {
                segment: 1,
                bus_start: 0,
                bus_end: 0,
                ecam_base: 0xf000_0000,
                mem32: (0xd100_0000, 0x100_0000),
                mem64: (36 << 30, 4 << 30),
                coherent: false,
            }
        );
        assert_eq!((roots[2].segment, roots[2].ecam_base, roots[2].coherent), (2, 0xf010_0000, true));
        assert!(roots[0].coherent);
    }
}
