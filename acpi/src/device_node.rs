//! A device object of the DSDT namespace, as plain data, and its AML.
//!
//! Every device this VMM declares in ACPI has the same shape: a name, `_HID`, `_UID`, optionally
//! `_CCA` (the DMA coherency the DMA contract requires on every DMA-capable device, ACPI 6.5
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

/// 16550A-compatible UART.
pub(crate) const HID_SERIAL_16550: HardwareId = HardwareId::EisaId("PNP0501");
/// virtio-mmio, the ID Linux's `virtio_mmio` driver matches in ACPI.
pub(crate) const HID_VIRTIO_MMIO: HardwareId = HardwareId::String("LNRO0005");

/// One `Device (NAME) { ... }` in `\_SB_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    /// Object name.
    pub(crate) name: NameSeg,
    /// `_HID`.
    pub(crate) hid: HardwareId,
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

impl DeviceNode {
    /// `Device (NAME) { Name (_HID, ...) Name (_UID, ...) [Name (_CCA, ...)] ... [Name (_CRS, ...)] }`.
    pub(crate) fn to_aml(&self) -> Vec<u8> {
        let mut objects: Vec<Name> = Vec::new();
        objects.push(match self.hid {
            HardwareId::EisaId(id) => Name::new("_HID".into(), &EISAName::new(id)),
            HardwareId::String(id) => Name::new("_HID".into(), &id),
        });
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
}
