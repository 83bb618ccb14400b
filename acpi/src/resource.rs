//! Resource descriptors of a device's `_CRS` (ACPI 6.5 section 6.4).
//!
//! Each variant is what some device of this VMM needs: IO and IRQNoFlags for UARTs,
//! Memory32Fixed and Extended Interrupt for virtio-mmio and the motherboard resources, and the
//! Word/DWord/QWord address space descriptors (section 6.4.3.5) of a PCI host bridge's windows.

use acpi_tables::aml::{AddressSpace, AddressSpaceCacheable, Interrupt, Memory32Fixed, ResourceTemplate, IO};
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
    /// `WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, start, end, 0,
    /// end - start + 1)`: the bus numbers a PCI host bridge decodes (section 6.4.3.5.3).
    BusNumbers {
        /// First bus.
        start: u8,
        /// Last bus; not below `start`.
        end: u8,
    },
    /// `DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
    /// 0, base, base + len - 1, 0, len)`: a memory window a PCI host bridge forwards to the
    /// devices below it (section 6.4.3.5.2).
    Memory32Window {
        /// First byte.
        base: u32,
        /// Length in bytes; not 0, and `base + len` must not pass 4 GiB.
        len: u32,
    },
    /// The QWordMemory counterpart of [`Resource::Memory32Window`] (section 6.4.3.5.1).
    Memory64Window {
        /// First byte.
        base: u64,
        /// Length in bytes; not 0, and `base + len` must not pass 2^64.
        len: u64,
    },
}

/// `max` of a fixed window of `len` bytes at `base` (`_MIN` = base, `_MAX` = base + len - 1).
///
/// The description is validated before it becomes resources, so `len` is never 0 and the window
/// never wraps; should that be broken anyway, this saturates instead of panicking, and since
/// `acpi_tables` computes `_LEN` as `max - min + 1`, the result always fits the type.
macro_rules! window_max {
    ($base:expr, $len:expr) => {
        $base.saturating_add($len.max(1) - 1)
    };
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
            // acpi_tables encodes every address space descriptor with _MIF and _MAF set and the
            // consumer bit clear, i.e. as a fixed window the bridge produces for its children,
            // which is what a host bridge window is (section 6.4.3.5, general flags bit 0).
            Resource::BusNumbers { start, end } => {
                Box::new(AddressSpace::new_bus_number(u16::from(start), u16::from(end.max(start))))
            }
            // Non-cacheable (not prefetchable): Linux places non-prefetchable BARs only in
            // non-prefetchable windows, prefetchable BARs in either, so this window takes any BAR.
            Resource::Memory32Window { base, len } => Box::new(AddressSpace::new_memory(
                AddressSpaceCacheable::NotCacheable,
                true,
                base,
                window_max!(base, len),
                None,
            )),
            Resource::Memory64Window { base, len } => Box::new(AddressSpace::new_memory(
                AddressSpaceCacheable::NotCacheable,
                true,
                base,
                window_max!(base, len),
                None,
            )),
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
    fn word_bus_number() {
        let bytes = resource_template(&[Resource::BusNumbers { start: 0x10, end: 0x3f }]);
        assert_eq!(
            bytes,
            [
                0x11, 0x15, 0x0a, 0x12, // Buffer, PkgLength 21, BufferSize 18
                0x88, 0x0d, 0x00, // Word address space descriptor, length 13
                0x02, // resource type: bus number range
                0x0c, // general flags: MaxFixed | MinFixed, PosDecode, ResourceProducer (bit 0 = 0)
                0x00, // type-specific flags: none for bus numbers
                0x00, 0x00, // _GRA
                0x10, 0x00, // _MIN
                0x3f, 0x00, // _MAX
                0x00, 0x00, // _TRA
                0x30, 0x00, // _LEN = 0x3f - 0x10 + 1
                0x79, 0x00,
            ]
        );
    }

    #[test]
    fn dword_memory_window() {
        let bytes = resource_template(&[Resource::Memory32Window { base: 0xc000_0000, len: 0x3ec0_0000 }]);
        assert_eq!(
            bytes,
            [
                0x11, 0x1f, 0x0a, 0x1c, // Buffer, PkgLength 31, BufferSize 28
                0x87, 0x17, 0x00, // DWord address space descriptor, length 23
                0x00, // resource type: memory range
                0x0c, // general flags: MaxFixed | MinFixed, PosDecode, ResourceProducer
                0x01, // type-specific flags: ReadWrite, NonCacheable, AddressRangeMemory, TypeStatic
                0x00, 0x00, 0x00, 0x00, // _GRA
                0x00, 0x00, 0x00, 0xc0, // _MIN 0xc0000000
                0xff, 0xff, 0xbf, 0xfe, // _MAX 0xfebfffff
                0x00, 0x00, 0x00, 0x00, // _TRA
                0x00, 0x00, 0xc0, 0x3e, // _LEN 0x3ec00000
                0x79, 0x00,
            ]
        );
    }

    #[test]
    fn qword_memory_window() {
        let bytes =
            resource_template(&[Resource::Memory64Window { base: 0x80_0000_0000, len: 0x10_0000_0000 }]);
        assert_eq!(
            bytes,
            [
                0x11, 0x33, 0x0a, 0x30, // Buffer, PkgLength 51, BufferSize 48
                0x8a, 0x2b, 0x00, // QWord address space descriptor, length 43
                0x00, 0x0c,
                0x01, // memory range; MinFixed | MaxFixed, producer; ReadWrite, NonCacheable
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // _GRA
                0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, // _MIN 0x80_0000_0000
                0xff, 0xff, 0xff, 0xff, 0x8f, 0x00, 0x00, 0x00, // _MAX 0x8f_ffff_ffff
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // _TRA
                0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, // _LEN 0x10_0000_0000
                0x79, 0x00,
            ]
        );
    }

    #[test]
    fn broken_windows_do_not_panic() {
        // Validation keeps these out; encoding them must still not overflow.
        for r in [
            Resource::Memory32Window { base: 0, len: 0 },
            Resource::Memory32Window { base: u32::MAX, len: u32::MAX },
            Resource::Memory64Window { base: u64::MAX, len: 2 },
            Resource::BusNumbers { start: 0xff, end: 0 },
        ] {
            assert_eq!(resource_template(&[r]).last(), Some(&0x00));
        }
        // The full 32-bit window that does fit: _LEN = 0xffffffff.
        let b = resource_template(&[Resource::Memory32Window { base: 0, len: u32::MAX }]);
        assert_eq!(b[4 + 14..4 + 18], [0xfe, 0xff, 0xff, 0xff], "_MAX");
        assert_eq!(b[4 + 22..4 + 26], [0xff, 0xff, 0xff, 0xff], "_LEN");
    }

    #[test]
    fn irq_masks() {
        let mut b = Vec::new();
        IrqNoFlags(0).to_aml_bytes(&mut b);
        IrqNoFlags(15).to_aml_bytes(&mut b);
        assert_eq!(b, [0x22, 0x01, 0x00, 0x22, 0x00, 0x80]);
    }
}
