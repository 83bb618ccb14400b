//! Resource descriptors of a device's `_CRS` (ACPI 6.5 section 6.4).
//!
//! Each variant is what some device of this VMM needs; later devices add variants (Memory32Fixed
//! and Extended Interrupt for virtio-mmio, Word/DWord/QWord address spaces for PCI host bridges,
//! which `acpi_tables` already encodes).

use acpi_tables::aml::{Interrupt, Memory32Fixed, ResourceTemplate, IO};
use acpi_tables::{Aml, AmlSink};

/// One resource of a `_CRS` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `IO (Decode16, base, base, 0, len)`: a fixed range of `len` I/O ports.
    Io {
        /// First port.
        base: u16,
        /// Number of ports.
        len: u8,
    },
    /// `IRQNoFlags () {irq}`: an ISA IRQ (0-15), edge triggered, active high, exclusive.
    IrqNoFlags(u8),
    /// `Memory32Fixed (ReadWrite, base, len)`: a register window (section 6.4.3.4).
    Memory32Fixed {
        /// First byte.
        base: u32,
        /// Length in bytes.
        len: u32,
    },
    /// `Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi}`: a global system
    /// interrupt beyond the ISA range (extended interrupt descriptor, section 6.4.3.6).
    EdgeInterrupt(u32),
}

/// The short IRQ descriptor without its information byte (section 6.4.2.1): tag 0x22 (small
/// item, name 0x4, length 2), then the 16-bit mask of IRQs 0-15. Omitting the information byte
/// is what `IRQNoFlags` means: high true, edge sensitive, not shareable — the ISA defaults, and
/// the classic PC description of a UART. `acpi_tables` only has the extended interrupt descriptor.
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        // Callers keep the IRQ below 16 (checked when the description is turned into nodes);
        // an out-of-range IRQ yields an empty mask rather than a wrong one.
        let mask = 1u16.checked_shl(u32::from(self.0)).unwrap_or(0);
        sink.byte(0x22);
        sink.word(mask);
    }
}

impl Resource {
    fn to_aml(self) -> Box<dyn Aml> {
        match self {
            // Alignment 0 as in the brief's ASL: the range is fixed (min == max), so alignment is
            // meaningless and iasl/Linux accept 0.
            Resource::Io { base, len } => Box::new(IO::new(base, base, 0, len)),
            Resource::IrqNoFlags(irq) => Box::new(IrqNoFlags(irq)),
            Resource::Memory32Fixed { base, len } => Box::new(Memory32Fixed::new(true, base, len)),
            Resource::EdgeInterrupt(gsi) => Box::new(Interrupt::new(true, true, false, false, gsi)),
        }
    }
}

/// `ResourceTemplate () { resources }`, ready to be the value of `Name (_CRS, ...)`.
pub(crate) fn resource_template(resources: &[Resource]) -> Vec<u8> {
    let items: Vec<Box<dyn Aml>> = resources.iter().map(|r| r.to_aml()).collect();
    let children: Vec<&dyn Aml> = items.iter().map(|b| b.as_ref()).collect();
    let mut bytes = Vec::new();
    ResourceTemplate::new(children).to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn com1_template() {
        let bytes = resource_template(&[Resource::Io { base: 0x3f8, len: 8 }, Resource::IrqNoFlags(4)]);
        assert_eq!(
            bytes,
            [
                0x11, 0x10, 0x0a, 0x0d, // Buffer, PkgLength 16, BufferSize 13
                0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, // IO(Decode16, 0x3f8, 0x3f8, 0, 8)
                0x22, 0x10, 0x00, // IRQNoFlags(){4}: mask bit 4
                0x79, 0x00, // EndTag, checksum 0 ("treat as valid")
            ]
        );
    }

    #[test]
    fn virtio_mmio_template() {
        let bytes = resource_template(&[
            Resource::Memory32Fixed { base: 0xd000_0000, len: 0x200 },
            Resource::EdgeInterrupt(5),
        ]);
        assert_eq!(
            bytes,
            [
                0x11, 0x1a, 0x0a, 0x17, // Buffer, PkgLength 26, BufferSize 23
                // Memory32Fixed: tag 0x86, length 9, RW, base, length
                0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00,
                // Extended interrupt: tag 0x89, length 6, flags consumer|edge, count 1, GSI 5
                0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, //
                0x79, 0x00,
            ]
        );
    }

    #[test]
    fn irq_masks() {
        let mut b = Vec::new();
        IrqNoFlags(0).to_aml_bytes(&mut b);
        IrqNoFlags(15).to_aml_bytes(&mut b);
        assert_eq!(b, [0x22, 0x01, 0x00, 0x22, 0x00, 0x80]);
    }
}
