//! Differentiated System Description Table (ACPI 6.5 section 5.2.11.1): the AML namespace.
//!
//! ```text
//! Name (\_S5_, Package (4) { SLP_TYP, 0, 0, 0 })
//! Scope (\_SB_) {
//!     Device (C000) { _HID "ACPI0007", _UID }
//!     Device (COM1) { _HID EISAID("PNP0501"), _UID, _CRS { IO, IRQNoFlags } }
//!     Device (VR00) { _HID "LNRO0005", _UID, _CCA, _CRS { Memory32Fixed, Interrupt } }
//!     Device (PCI0) { _HID EISAID("PNP0A08"), _CID EISAID("PNP0A03"), _UID, _CCA, _SEG, _BBN, _CRS }
//!     Device (MBRD) { _HID EISAID("PNP0C02"), _UID, _CRS { Memory32Fixed per ECAM } }
//!     ...
//! }
//! ```
//!
//! `\_S5_` (section 7.4.2.6) gives the SLP_TYP the guest writes to SLEEP_CONTROL_REG to power
//! off; see [`crate::sleep`] for the register contract the VMM's device implements. Every vCPU is a
//! processor device (`C000`, `C001`, ... by vCPU index, in hex) whose `_UID` is the ACPI Processor
//! UID of its MADT local APIC entry: ACPI 6.5 section 5.2.12.2 ties each MADT processor entry to a
//! processor object of the namespace by that UID, and section 8.4 declares processors as
//! `ACPI0007` devices (the `Processor` statement is deprecated). No `_STA`: every vCPU is present
//! and enabled, which is what an absent `_STA` means (section 6.3.7). Devices are
//! produced by [`device_nodes`] from the description; the PCI host bridges and their
//! motherboard resources come from [`crate::pci`].

use acpi_tables::aml::{Name, Package, Path, Scope};
use acpi_tables::Aml;

use crate::description::Platform;
use crate::device_node::{DeviceNode, HID_PROCESSOR, HID_SERIAL_16550, HID_VIRTIO_MMIO};
use crate::error::Error;
use crate::identity::new_table;
use crate::madt;
use crate::name_seg::NameSeg;
use crate::pci;
use crate::raw_aml::RawAml;
use crate::resource::Resource;
use crate::sleep::SLP_TYP_MAX;

/// DSDT revision 2: AML integers are 64 bits wide (section 5.2.11.1).
const REVISION: u8 = 2;
/// Number of I/O ports of a 16550.
const UART_PORTS: u8 = 8;
/// Highest ISA IRQ, the limit of IRQNoFlags.
const ISA_IRQ_MAX: u8 = 15;

/// `Name (\_S5_, Package (4) { slp_typ, 0, 0, 0 })`.
///
/// Element 0 is the SLP_TYP for SLEEP_CONTROL_REG on a HW-reduced machine (PM1a_CNT otherwise);
/// element 1 would be PM1b_CNT's, which does not exist; the last two are reserved. Linux's
/// ACPICA reads elements 0 and 1 (`acpi_get_sleep_type_data()`).
fn s5_object(slp_typ: u8) -> Result<Vec<u8>, Error> {
    if slp_typ > SLP_TYP_MAX {
        return Err(Error::SlpTypOutOfRange(slp_typ));
    }
    let zero = 0u8;
    let package = Package::new(vec![&slp_typ, &zero, &zero, &zero]);
    let mut bytes = Vec::new();
    Name::new(Path::new("\\_S5_"), &package).to_aml_bytes(&mut bytes);
    Ok(bytes)
}

/// The devices of `\_SB_`, in order: processors (C000, C001, ... by vCPU index), serial ports
/// (COM1, COM2, ... by position), virtio-mmio devices (VR00, VR01, ...), PCI host bridges (PCI0,
/// PCI1, ...) and, with any of those, the motherboard resources (MBRD).
fn device_nodes(platform: &Platform) -> Result<Vec<DeviceNode>, Error> {
    madt::check_cpus(&platform.cpus)?;
    let mut nodes = Vec::new();
    for (uid, _) in madt::processor_uids(&platform.cpus) {
        nodes.push(DeviceNode {
            name: NameSeg::indexed("C", usize::from(uid)).ok_or(Error::TooManyCpus(platform.cpus.len()))?,
            hid: HID_PROCESSOR,
            cid: None,
            uid: u32::from(uid),
            cca: None, // a processor is not a DMA master
            integers: Vec::new(),
            resources: Vec::new(),
        });
    }
    for (i, port) in platform.serial_ports.iter().enumerate() {
        let name =
            NameSeg::indexed("COM", i + 1).ok_or(Error::TooManySerialPorts(platform.serial_ports.len()))?;
        if port.irq > ISA_IRQ_MAX {
            return Err(Error::SerialIrqNotIsa { io_base: port.io_base, irq: port.irq });
        }
        nodes.push(DeviceNode {
            name,
            hid: HID_SERIAL_16550,
            cid: None,
            uid: port.uid,
            cca: None, // a UART does no DMA
            integers: Vec::new(),
            resources: vec![
                Resource::Io { base: port.io_base, len: UART_PORTS },
                Resource::IrqNoFlags(port.irq),
            ],
        });
    }
    for (i, dev) in platform.virtio_mmio.iter().enumerate() {
        let name = NameSeg::indexed("VR", i).ok_or(Error::TooManyVirtioMmio(platform.virtio_mmio.len()))?;
        nodes.push(DeviceNode {
            name,
            hid: HID_VIRTIO_MMIO,
            cid: None,
            uid: u32::try_from(i).map_err(|_| Error::TooManyVirtioMmio(platform.virtio_mmio.len()))?,
            // Every virtio device does DMA; the DMA contract requires its coherency on it.
            cca: Some(dev.coherent),
            integers: Vec::new(),
            resources: vec![
                Resource::Memory32Fixed { base: dev.base, len: dev.size },
                Resource::EdgeInterrupt(dev.gsi),
            ],
        });
    }
    nodes.extend(pci::device_nodes(&platform.pci_roots)?);
    Ok(nodes)
}

/// The DSDT of `platform`.
pub(crate) fn encode(platform: &Platform) -> Result<Vec<u8>, Error> {
    let mut aml = s5_object(platform.sleep.s5_slp_typ)?;
    let devices: Vec<u8> = device_nodes(platform)?.iter().flat_map(DeviceNode::to_aml).collect();
    Scope::new(Path::new("\\_SB_"), vec![&RawAml(devices)]).to_aml_bytes(&mut aml);
    if let Some(controller) = &platform.hotplug {
        // After the host bridges: the slot objects go into their scopes.
        let root_name = |segment: u16| {
            let index = platform.pci_roots.iter().position(|r| r.segment == segment)?;
            NameSeg::indexed("PCI", index)
        };
        aml.extend(crate::hotplug::encode(controller, root_name)?);
    }

    let mut dsdt = new_table(*b"DSDT", REVISION);
    dsdt.append_slice(&aml);
    Ok(dsdt.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::SerialPort;
    use crate::test_utils::{byte_sum, le_u32, sample_pci_root, sample_platform};

    #[test]
    fn s5_package_bytes() {
        let expected: Vec<u8> = [
            &[0x08, b'\\'][..],
            b"_S5_",
            // Package, PkgLength 7, 4 elements: BytePrefix 5, Zero, Zero, Zero
            &[0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00],
        ]
        .concat();
        assert_eq!(s5_object(5).unwrap(), expected);
        assert!(matches!(s5_object(8), Err(Error::SlpTypOutOfRange(8))));
    }

    #[test]
    fn table_header_and_body() {
        let mut p = sample_platform();
        p.cpus = vec![0];
        let b = encode(&p).unwrap();
        assert_eq!(&b[0..4], b"DSDT");
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(b[8], 2, "revision");
        assert_eq!(byte_sum(&b), 0);
        let body = &b[36..];
        assert!(body.starts_with(&s5_object(5).unwrap()));
        let scope = &body[s5_object(5).unwrap().len()..];
        // ScopeOp, two-byte PkgLength 80 (itself + 5-byte name + 28-byte processor + 45-byte COM1):
        // 0x40 | (80 & 0xf), 80 >> 4; then \_SB_.
        assert_eq!(&scope[..8], &[0x10, 0x40, 0x05, b'\\', b'_', b'S', b'B', b'_']);
        let processor: Vec<u8> = [
            &[0x5b, 0x82, 0x1a][..], // DeviceOp, PkgLength 26
            b"C000",
            &[0x08],
            b"_HID",
            &[0x0d],
            b"ACPI0007",
            &[0x00], // Name (_HID, "ACPI0007")
            &[0x08],
            b"_UID",
            &[0x00], // Name (_UID, Zero)
        ]
        .concat();
        assert_eq!(&scope[8..36], &processor[..]);
        // Then the COM1 device (DeviceOp, PkgLength 43, ...).
        assert_eq!(&scope[36..41], &[0x5b, 0x82, 0x2b, b'C', b'O']);
        assert_eq!(scope.len(), 8 + 28 + 45);
    }

    #[test]
    fn serial_ports_named_by_position() {
        let mut p = sample_platform();
        p.serial_ports.push(SerialPort { io_base: 0x2f8, irq: 3, uid: 2 });
        let nodes = device_nodes(&p).unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str().to_owned()).collect();
        assert_eq!(names, ["C000", "C001", "COM1", "COM2"]);
        assert_eq!(nodes[3].resources, [Resource::Io { base: 0x2f8, len: 8 }, Resource::IrqNoFlags(3)]);
        assert_eq!(nodes[3].uid, 2);
    }

    #[test]
    fn pci_roots_follow_the_other_devices() {
        let mut p = sample_platform();
        p.pci_roots.push(sample_pci_root());
        let names: Vec<_> = device_nodes(&p).unwrap().iter().map(|n| n.name.as_str().to_owned()).collect();
        assert_eq!(names, ["C000", "C001", "COM1", "PCI0", "MBRD"]);
        let b = encode(&p).unwrap();
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(byte_sum(&b), 0);
        let at = b.windows(4).position(|w| w == b"PCI0").unwrap();
        assert_eq!(&b[at - 4..at - 2], &[0x5b, 0x82], "DeviceOp");
        p.pci_roots.push(sample_pci_root());
        assert!(matches!(encode(&p), Err(Error::DuplicatePciSegment(0))));
    }

    #[test]
    fn serial_limits() {
        let mut p = sample_platform();
        p.serial_ports = vec![SerialPort { io_base: 0x3f8, irq: 16, uid: 1 }];
        assert!(matches!(encode(&p), Err(Error::SerialIrqNotIsa { io_base: 0x3f8, irq: 16 })));
        p.serial_ports = vec![SerialPort { io_base: 0x3f8, irq: 4, uid: 1 }; 16];
        assert!(matches!(encode(&p), Err(Error::TooManySerialPorts(16))));
        p.serial_ports.truncate(15);
        assert!(encode(&p).is_ok());
    }

    #[test]
    fn processors_need_representable_cpus() {
        let mut p = sample_platform();
        p.cpus = vec![];
        assert!(matches!(encode(&p), Err(Error::NoCpus)));
        p.cpus = (0..=255).collect();
        assert!(matches!(encode(&p), Err(Error::TooManyCpus(256))));
        p.cpus = (0..=254).collect();
        let names: Vec<_> = device_nodes(&p).unwrap().iter().map(|n| n.name.as_str().to_owned()).collect();
        assert_eq!(names[..2], ["C000", "C001"]);
        assert_eq!(names[254], "C0FE");
    }
}
