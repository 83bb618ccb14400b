//! What the ACPI tables of an x86_64 machine declare: the platform (CPUs,
//! IOAPIC, the legacy power and reset registers, COM1), the virtio-mmio
//! devices and PCI host bridges with their `_CCA`, and the VIOT
//! ([`crate::scope`]) or the DMAR ([`crate::vtd`]), as the plain description the `dmavm-acpi` encoder
//! takes. `describe` and the VM runner build the tables through the same
//! two functions here, so the tables `describe` dumps are the guest's.

use dmavm_acpi::{
    AcpiTables, IoApic, PciRoot, Platform, ResetRegister, SerialPort, SleepRegisters, VirtioMmioDevice,
};
use dmavm_devices::legacy::power::{
    POWER_PORT_BASE, RESET_OFFSET, RESET_VALUE, S5_SLP_TYP, SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET,
};
use dmavm_devices::legacy::{COM1_ADDR, COM1_IRQ};

use crate::error::{fail, Result};
use crate::layout::x86_64::{ACPI_END, ACPI_START, IOAPIC_ADDR};
use crate::layout::PciSegmentWindows;
use crate::{Machine, PciBridge, Placement};

impl Machine {
    /// The platform this machine declares: its vCPUs (APIC ID = vCPU
    /// index), the IOAPIC, the power and reset registers, COM1 and its
    /// devices.
    pub fn acpi_platform(&self) -> Result<Platform> {
        let Ok(cpus) = (0..self.cpus).map(u8::try_from).collect::<Result<Vec<u8>, _>>() else {
            fail!(Layout, "--cpus {}: the x86_64 machine's APIC IDs are 8-bit (at most 256 vCPUs)", self.cpus)
        };
        let port = |offset: u64| match u16::try_from(POWER_PORT_BASE + offset) {
            Ok(port) => Ok(port),
            Err(_) => Err(crate::MachineError::Layout(format!("power port {offset:#x} is not an I/O port"))),
        };
        Ok(Platform {
            cpus,
            ioapic: IoApic { id: 0, address: IOAPIC_ADDR as u32, gsi_base: 0 },
            // Every ISA IRQ reaches the IOAPIC pin of the same number; without
            // a PIT there is no IRQ 0 to redirect to pin 2.
            isa_overrides: Vec::new(),
            sleep: SleepRegisters {
                control_port: port(SLEEP_CONTROL_OFFSET)?,
                status_port: port(SLEEP_STATUS_OFFSET)?,
                s5_slp_typ: S5_SLP_TYP,
            },
            reset: ResetRegister { port: port(RESET_OFFSET)?, value: RESET_VALUE },
            serial_ports: vec![SerialPort { io_base: COM1_ADDR as u16, irq: COM1_IRQ as u8, uid: 0 }],
            virtio_mmio: self.acpi_virtio_mmio(),
            pci_roots: self.acpi_pci_roots()?,
            viot: self.acpi_viot(),
            dmar: self.acpi_dmar(),
            hotplug: Some(self.hotplug_controller()),
        })
    }

    /// The tables of this machine, placed in the BIOS area as the guest
    /// gets them.
    pub fn acpi_tables(&self) -> Result<AcpiTables> {
        Ok(dmavm_acpi::build(&self.acpi_platform()?, ACPI_START..ACPI_END)?)
    }

    /// The virtio-mmio devices as the ACPI tables declare them.
    pub fn acpi_virtio_mmio(&self) -> Vec<VirtioMmioDevice> {
        self.devices
            .iter()
            .filter_map(|d| match d.placement {
                Placement::Mmio { window } => {
                    let w = self.mmio_window(window)?;
                    Some(VirtioMmioDevice {
                        base: w.base as u32,
                        size: w.size as u32,
                        gsi: w.interrupt,
                        coherent: d.coherent,
                    })
                }
                Placement::Pci { .. } => None,
            })
            .collect()
    }

    /// Every host bridge with where its segment decodes, in segment order.
    pub fn pci_segments(&self) -> Result<Vec<(&PciBridge, PciSegmentWindows)>> {
        self.bridges.iter().map(|b| Ok((b, b.windows(self.arch, self.memory)?))).collect()
    }

    /// The PCI host bridges as the ACPI tables declare them: one root per
    /// segment with its bus range (bus 0 only: every function is on the
    /// root bus), ECAM, windows and coherency. There is always at least `pci0`
    /// (without a host bridge a guest probes for PCI and complains).
    pub fn acpi_pci_roots(&self) -> Result<Vec<PciRoot>> {
        let below_4g = |what: &str, v: u64| {
            u32::try_from(v).map_err(|_| crate::MachineError::Layout(format!("{what} {v:#x} is above 4 GiB")))
        };
        self.pci_segments()?
            .into_iter()
            .map(|(bridge, w)| {
                Ok(PciRoot {
                    segment: bridge.segment,
                    bus_start: 0,
                    bus_end: u8::try_from(w.buses().saturating_sub(1)).unwrap_or(u8::MAX),
                    ecam_base: w.ecam.start,
                    mem32: (
                        below_4g("32-bit window", w.mem32.start)?,
                        below_4g("32-bit window size", w.mem32.end - w.mem32.start)?,
                    ),
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
    use crate::options::{parse_bridge, parse_disk, parse_rng};
    use crate::test_utils::new_machine;

    /// The AML's register block and the device model's are one contract.
    #[test]
    fn the_hotplug_registers_of_firmware_and_device_agree() {
        use dmavm_acpi::hotplug as aml;
        use dmavm_devices::hotplug_events as dev;
        assert_eq!(
            [aml::REG_EVENTS, aml::REG_SEGMENT, aml::REG_PRESENT, aml::REG_INSERTED, aml::REG_REMOVING],
            [dev::EVENTS, dev::SEGMENT, dev::PRESENT, dev::INSERTED, dev::REMOVING]
        );
        assert_eq!((aml::REG_EJECT, aml::REGISTERS_SIZE), (dev::EJECT, dev::SIZE));
        assert_eq!((aml::EVENT_POWER_BUTTON, aml::EVENT_PCI_SLOTS), (dev::POWER_BUTTON, dev::PCI_SLOTS));
    }

    #[test]
    fn mmio_devices_declare_their_window_and_coherency() {
        let disks = [parse_disk("path=a").unwrap(), parse_disk("path=b,coherent=off,id=data").unwrap()];
        let m = new_machine(&[], &disks, &[parse_rng("").unwrap()], None, None).unwrap();
        let acpi = m.acpi_virtio_mmio();
        assert_eq!(acpi[1], VirtioMmioDevice { base: 0xd000_1000, size: 0x200, gsi: 6, coherent: false });
    }

    #[test]
    fn one_bridge_is_segment_0_with_its_root_bus_only() {
        let roots = new_machine(&[], &[], &[], None, None).unwrap().acpi_pci_roots().unwrap();
        assert_eq!(
            roots,
            [PciRoot {
                segment: 0,
                bus_start: 0,
                bus_end: 0,
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
        let roots = new_machine(&b, &[], &[], None, None).unwrap().acpi_pci_roots().unwrap();
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
