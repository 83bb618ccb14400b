//! Helpers shared by the unit tests.

use crate::description::{IoApic, PciRoot, Platform, ResetRegister, SerialPort, SleepRegisters};

/// Sum of all bytes mod 256; 0 for a table with a correct checksum.
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))
}

pub(crate) fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Two CPUs, the I/O APIC at its usual place, the power registers at 0x600 (control), 0x601
/// (status), 0x602 (reset, value 1), S5 = 5, COM1; no virtio-mmio devices, no PCI, no IOMMU.
pub(crate) fn sample_platform() -> Platform {
    Platform {
        cpus: vec![0, 1],
        ioapic: IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
        isa_overrides: vec![],
        sleep: SleepRegisters { control_port: 0x600, status_port: 0x601, s5_slp_typ: 5 },
        reset: ResetRegister { port: 0x602, value: 1 },
        serial_ports: vec![SerialPort { io_base: 0x3f8, irq: 4, uid: 1 }],
        virtio_mmio: Vec::new(),
        pci_roots: Vec::new(),
        viot: None,
        dmar: None,
        hotplug: None,
    }
}

/// Segment 0, buses 0-0xff, ECAM at 0xb000_0000, 32-bit window 0xc000_0000 + 512 MiB, 64-bit
/// window of 64 GiB at 1 TiB, coherent.
pub(crate) fn sample_pci_root() -> PciRoot {
    PciRoot {
        segment: 0,
        bus_start: 0,
        bus_end: 0xff,
        ecam_base: 0xb000_0000,
        mem32: (0xc000_0000, 0x2000_0000),
        mem64: (0x100_0000_0000, 0x10_0000_0000),
        coherent: true,
    }
}

/// A device object found in AML: its full path, and its `_HID` and `_UID` if they are plain
/// `Name` objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AmlDevice {
    pub(crate) path: String,
    pub(crate) hid: Option<String>,
    pub(crate) uid: Option<u64>,
}

/// Every `Device` in the AML of a DSDT (its bytes, header included), read by a small decoder of
/// the AML grammar (ACPI 6.5 section 20.2) that knows the objects a dmavm DSDT may contain (Name,
/// Scope, Device and the data objects) and panics on anything else, so a test does not pass by
/// skipping what it cannot read.
pub(crate) fn aml_devices(dsdt: &[u8]) -> Vec<AmlDevice> {
    assert_eq!(&dsdt[..4], b"DSDT");
    let mut devices = Vec::new();
    let mut reader = AmlReader { bytes: &dsdt[36..], at: 0 };
    reader.term_list(dsdt.len() - 36, "", &mut devices, None);
    devices
}

struct AmlReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// What a `Name` object holds, as far as these tests care.
enum AmlData {
    Integer(u64),
    String(String),
    Other,
}

impl AmlReader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes[self.at];
        self.at += 1;
        b
    }

    /// PkgLength (section 20.2.4): returns the offset where the package ends.
    fn pkg_end(&mut self) -> usize {
        let start = self.at;
        let lead = self.byte();
        let follow = lead >> 6;
        let len = if follow == 0 {
            usize::from(lead & 0x3f)
        } else {
            let mut len = usize::from(lead & 0x0f);
            for i in 0..follow {
                len |= usize::from(self.byte()) << (4 + 8 * u32::from(i));
            }
            len
        };
        start + len
    }

    fn name_seg(&mut self) -> String {
        let seg = String::from_utf8(self.bytes[self.at..self.at + 4].to_vec()).unwrap();
        self.at += 4;
        seg
    }

    /// NameString (section 20.2.2), resolved against `scope`.
    fn name_string(&mut self, scope: &str) -> String {
        let mut path = scope.to_owned();
        if self.bytes[self.at] == b'\\' {
            self.at += 1;
            path.clear();
        }
        while self.bytes[self.at] == b'^' {
            self.at += 1;
            path.truncate(path.rfind('.').unwrap_or(0));
        }
        let segs = match self.byte() {
            0x00 => 0,
            0x2e => 2,
            0x2f => self.byte(),
            _ => {
                self.at -= 1;
                1
            }
        };
        for _ in 0..segs {
            let seg = self.name_seg();
            path = if path.is_empty() { format!("\\{seg}") } else { format!("{path}.{seg}") };
        }
        path
    }

    fn data(&mut self) -> AmlData {
        match self.byte() {
            0x00 => AmlData::Integer(0),
            0x01 => AmlData::Integer(1),
            0xff => AmlData::Integer(u64::MAX),
            0x0a => AmlData::Integer(u64::from(self.byte())),
            0x0b => AmlData::Integer(self.integer(2)),
            0x0c => AmlData::Integer(self.integer(4)),
            0x0e => AmlData::Integer(self.integer(8)),
            0x0d => {
                let end = self.at + self.bytes[self.at..].iter().position(|&b| b == 0).unwrap();
                let s = String::from_utf8(self.bytes[self.at..end].to_vec()).unwrap();
                self.at = end + 1;
                AmlData::String(s)
            }
            0x11 | 0x12 => {
                self.at = self.pkg_end();
                AmlData::Other
            }
            op => panic!("unexpected data object opcode {op:#x} at AML offset {:#x}", self.at - 1),
        }
    }

    /// A little-endian integer of `len` bytes.
    fn integer(&mut self, len: usize) -> u64 {
        let value =
            self.bytes[self.at..self.at + len].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        self.at += len;
        value
    }

    /// The objects up to `end`, in `scope`; `device` collects the `_HID`/`_UID` of the device whose
    /// body this is.
    fn term_list(&mut self, end: usize, scope: &str, devices: &mut Vec<AmlDevice>, device: Option<usize>) {
        while self.at < end {
            match self.byte() {
                0x08 => {
                    let name = self.name_string(scope);
                    let value = self.data();
                    let Some(index) = device else { continue };
                    match (name.rsplit('.').next().unwrap_or(""), value) {
                        ("_HID", AmlData::String(s)) => devices[index].hid = Some(s),
                        ("_HID", AmlData::Integer(id)) => devices[index].hid = Some(eisa_id(id)),
                        ("_UID", AmlData::Integer(uid)) => devices[index].uid = Some(uid),
                        _ => {}
                    }
                }
                0x10 => {
                    let body_end = self.pkg_end();
                    let path = self.name_string(scope);
                    self.term_list(body_end, &path, devices, None);
                }
                0x5b if self.bytes[self.at] == 0x82 => {
                    self.at += 1;
                    let body_end = self.pkg_end();
                    let path = self.name_string(scope);
                    devices.push(AmlDevice { path: path.clone(), hid: None, uid: None });
                    let index = devices.len() - 1;
                    self.term_list(body_end, &path, devices, Some(index));
                }
                op => panic!("unexpected AML opcode {op:#x} at offset {:#x}", self.at - 1),
            }
        }
        assert_eq!(self.at, end, "object overruns its package");
    }
}

/// The seven characters of a compressed EISA ID (ACPI 6.5 section 19.6.35), e.g. "PNP0501".
fn eisa_id(id: u64) -> String {
    let v = u32::try_from(id).unwrap().swap_bytes();
    let letter = |shift: u32| char::from(b'@' + u8::try_from((v >> shift) & 0x1f).unwrap());
    format!("{}{}{}{:04X}", letter(26), letter(21), letter(16), v & 0xffff)
}
