//! A device object of the DSDT namespace, as plain data, and its AML.
//!
//! Every device this VMM declares in ACPI has the same shape: a name, `_HID`, optionally `_CID`,
//! `_UID`, optionally `_CCA` (the DMA coherency the DMA contract requires on every DMA-capable device, ACPI 6.5
//! section 6.2.17), a few more named integers (`_SEG`, `_BBN` for PCI host bridges) and `_CRS`.
//! The DSDT builder turns each description into one [`DeviceNode`], so adding a kind of device is
//! a mapping, not new AML code.

use acpi_tables::aml::{Device, EISAName, Name, Path};
use acpi_tables::Aml;

use crate::name_seg::NameSeg;
use crate::raw_aml::RawAml;
use crate::resource::{resource_template, Resource};

/// A device's hardware ID (ACPI 6.5 section 6.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HardwareId {
    /// A PNP ID compressed into an integer with `EISAID()`, e.g. "PNP0501", "PNP0A08". Must be
    /// a valid seven-character EISA ID (three upper-case letters, four hex digits):
    /// `acpi_tables` panics otherwise, so only the constants below are used.
    EisaId(&'static str),
    /// An ACPI ID as a string, e.g. "LNRO0005" (virtio-mmio).
    String(&'static str),
}

/// Processor device (ACPI 6.5 section 8.4): a vCPU in the namespace; its `_UID` is the ACPI
/// Processor UID of its MADT entry.
pub(crate) const HID_PROCESSOR: HardwareId = HardwareId::String("ACPI0007");
/// 16550A-compatible UART.
pub(crate) const HID_SERIAL_16550: HardwareId = HardwareId::EisaId("PNP0501");
/// virtio-mmio, the ID Linux's `virtio_mmio` driver matches in ACPI.
pub(crate) const HID_VIRTIO_MMIO: HardwareId = HardwareId::String("LNRO0005");
/// PCI Express host bridge (PCI Firmware 3.0 section 4.3.1).
pub(crate) const HID_PCIE_HOST_BRIDGE: HardwareId = HardwareId::EisaId("PNP0A08");
/// PCI host bridge, the compatible ID of every PCIe host bridge for OSes that only know PCI.
pub(crate) const CID_PCI_HOST_BRIDGE: HardwareId = HardwareId::EisaId("PNP0A03");
/// Motherboard resources: address ranges no driver owns but nothing else may use, such as the
/// ECAM (PCI Firmware 3.0 section 4.1.2).
pub(crate) const HID_MOTHERBOARD_RESOURCES: HardwareId = HardwareId::EisaId("PNP0C02");

/// One `Device (NAME) { ... }` in `\_SB_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    /// Object name.
    pub(crate) name: NameSeg,
    /// `_HID`.
    pub(crate) hid: HardwareId,
    /// `_CID`, a single compatible ID, if any.
    pub(crate) cid: Option<HardwareId>,
    /// `_UID`.
    pub(crate) uid: u32,
    /// `_CCA`: `Some(true)` for cache-coherent DMA, `Some(false)` for non-coherent, `None` for a
    /// device that does no DMA (the object is then omitted).
    pub(crate) cca: Option<bool>,
    /// Other named integers, in order (e.g. `_SEG`, `_BBN`).
    pub(crate) integers: Vec<(NameSeg, u64)>,
    /// Resources of `_CRS`, in order; no `_CRS` object when empty.
    pub(crate) resources: Vec<Resource>,
}

fn path(name: NameSeg) -> Path {
    Path::new(name.as_str())
}

impl HardwareId {
    /// `Name (name, EisaId (...))` or `Name (name, "...")`.
    fn name(self, name: &str) -> Name {
        match self {
            HardwareId::EisaId(id) => Name::new(name.into(), &EISAName::new(id)),
            HardwareId::String(id) => Name::new(name.into(), &id),
        }
    }
}

impl DeviceNode {
    /// `Device (NAME) { Name (_HID, ...) [Name (_CID, ...)] Name (_UID, ...) [Name (_CCA, ...)] ...
    /// [Name (_CRS, ...)] }`.
    pub(crate) fn to_aml(&self) -> Vec<u8> {
        let mut objects: Vec<Name> = Vec::new();
        objects.push(self.hid.name("_HID"));
        if let Some(cid) = self.cid {
            objects.push(cid.name("_CID"));
        }
        objects.push(Name::new("_UID".into(), &self.uid));
        if let Some(coherent) = self.cca {
            objects.push(Name::new("_CCA".into(), &u8::from(coherent)));
        }
        for &(name, value) in &self.integers {
            objects.push(Name::new(path(name), &value));
        }
        if !self.resources.is_empty() {
            objects.push(Name::new("_CRS".into(), &RawAml(resource_template(&self.resources))));
        }

        let children: Vec<&dyn Aml> = objects.iter().map(|o| o as &dyn Aml).collect();
        let mut bytes = Vec::new();
        Device::new(path(self.name), children).to_aml_bytes(&mut bytes);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn com1() -> DeviceNode {
        DeviceNode {
            name: NameSeg::new("COM1").unwrap(),
            hid: HID_SERIAL_16550,
            cid: None,
            uid: 1,
            cca: None,
            integers: vec![],
            resources: vec![Resource::Io { base: 0x3f8, len: 8 }, Resource::IrqNoFlags(4)],
        }
    }

    #[test]
    fn serial_device_bytes() {
        let expected: Vec<u8> = [
            &[0x5b, 0x82, 0x2b][..], // DeviceOp, PkgLength 43
            b"COM1",                 // name
            &[0x08],
            b"_HID",                         // Name (_HID,
            &[0x0c, 0x41, 0xd0, 0x05, 0x01], // EisaId ("PNP0501") = 0x0105d041
            &[0x08],
            b"_UID",
            &[0x01], // Name (_UID, One)
            &[0x08],
            b"_CRS",                   // Name (_CRS,
            &[0x11, 0x10, 0x0a, 0x0d], // Buffer (13)
            &[0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00],
        ]
        .concat();
        assert_eq!(com1().to_aml(), expected);
    }

    #[test]
    fn optional_objects() {
        let node = DeviceNode {
            name: NameSeg::new("VR00").unwrap(),
            hid: HardwareId::String("LNRO0005"),
            cid: None,
            uid: 0,
            cca: Some(true),
            integers: vec![(NameSeg::new("_SEG").unwrap(), 0)],
            resources: vec![],
        };
        let expected: Vec<u8> = [
            &[0x5b, 0x82, 0x26][..], // DeviceOp, PkgLength 38
            b"VR00",
            &[0x08],
            b"_HID",
            &[0x0d],
            b"LNRO0005",
            &[0x00], // String
            &[0x08],
            b"_UID",
            &[0x00], // Zero
            &[0x08],
            b"_CCA",
            &[0x01], // One
            &[0x08],
            b"_SEG",
            &[0x00], // Zero
        ]
        .concat();
        assert_eq!(node.to_aml(), expected);
    }

    #[test]
    fn compatible_id_follows_hardware_id() {
        let node = DeviceNode {
            name: NameSeg::new("PCI0").unwrap(),
            hid: HID_PCIE_HOST_BRIDGE,
            cid: Some(CID_PCI_HOST_BRIDGE),
            uid: 0,
            cca: None,
            integers: vec![],
            resources: vec![],
        };
        let expected: Vec<u8> = [
            &[0x5b, 0x82, 0x1f][..], // DeviceOp, PkgLength 31
            b"PCI0",
            &[0x08],
            b"_HID",
            &[0x0c, 0x41, 0xd0, 0x0a, 0x08], // EisaId ("PNP0A08") = 0x080ad041
            &[0x08],
            b"_CID",
            &[0x0c, 0x41, 0xd0, 0x0a, 0x03], // EisaId ("PNP0A03") = 0x030ad041
            &[0x08],
            b"_UID",
            &[0x00],
        ]
        .concat();
        assert_eq!(node.to_aml(), expected);
    }
}
