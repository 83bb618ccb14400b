//! Why the tables could not be built or dumped.

use std::path::PathBuf;

use crate::description::{PciFunction, ViotIommu};

/// `segment:bdf` as Linux names a PCI function, for the messages below.
fn pci(segment: &u16, bdf: &u16) -> PciFunction {
    PciFunction { segment: *segment, bdf: *bdf }
}

/// Errors from [`crate::build`] and [`crate::AcpiTables::dump_to_dir`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A DMAR without a remapping unit says nothing (Linux reports it as a broken table).
    #[error("the DMAR has no remapping hardware unit")]
    DmarNoUnit,
    /// The host address width is out of what the DMAR field and a page can express.
    #[error("DMAR host address width {0} bits is not from 12 to 64")]
    DmarHostAddressWidth(u8),
    /// A unit's register window must be a page of its own.
    #[error("VT-d unit of PCI segment {segment}: register base {base:#x} is not a page-aligned, non-zero address of its own")]
    DmarRegisterBase {
        /// The unit's segment.
        segment: u16,
        /// Its register base.
        base: u64,
    },
    /// A unit for a segment no host bridge has.
    #[error("VT-d unit of PCI segment {0}: no PCI host bridge of the platform has that segment")]
    DmarSegmentNotRoot(u16),
    /// A unit with an explicit scope naming nothing.
    #[error("VT-d unit of PCI segment {0} has no device in its scope and is not INCLUDE_PCI_ALL")]
    DmarEmptyScope(u16),
    /// A function outside the bus range of its segment's host bridge.
    #[error("DMAR names PCI function {}, which is not below a PCI host bridge of the platform", pci(.segment, .bdf))]
    DmarFunctionNotOnRoot {
        /// The segment.
        segment: u16,
        /// The function.
        bdf: u16,
    },
    /// A function in two scopes, or a segment with an INCLUDE_PCI_ALL unit and another unit.
    #[error("DMAR puts PCI function {} in the scope of two units", pci(.segment, .bdf))]
    DmarFunctionInTwoUnits {
        /// The segment.
        segment: u16,
        /// The function.
        bdf: u16,
    },
    /// A segment with an INCLUDE_PCI_ALL unit and another unit.
    #[error("PCI segment {0} has an INCLUDE_PCI_ALL VT-d unit and another unit")]
    DmarIncludeAllNotAlone(u16),
    /// More structures than the 16-bit lengths hold.
    #[error("VT-d unit of PCI segment {segment}: {functions} functions do not fit one DRHD")]
    DmarUnitTooLarge {
        /// The unit's segment.
        segment: u16,
        /// How many functions it names.
        functions: usize,
    },
    /// The MADT would list no processor.
    #[error("the platform has no CPUs")]
    NoCpus,
    /// Processor UIDs are one byte and 0xff is reserved for "all processors".
    #[error("{0} CPUs exceed the 255 that xAPIC MADT entries can describe")]
    TooManyCpus(usize),
    /// Two vCPUs would have the same local APIC ID.
    #[error("local APIC ID {0:#x} is given to more than one CPU")]
    DuplicateApicId(u8),
    /// 0xff is the xAPIC broadcast destination, not a usable ID.
    #[error("local APIC ID 0xff is the broadcast ID and cannot name a CPU")]
    BroadcastApicId,
    /// SLP_TYP is a 3-bit field of SLEEP_CONTROL_REG.
    #[error("S5 SLP_TYP {0} does not fit the 3-bit SLP_TYP field (0-7)")]
    SlpTypOutOfRange(u8),
    /// Interrupt source overrides only exist for ISA IRQs.
    #[error("interrupt source override for IRQ {0}, which is not an ISA IRQ (0-15)")]
    OverrideNotIsa(u8),
    /// IRQNoFlags can only describe IRQs 0-15.
    #[error("serial port at {io_base:#x} uses IRQ {irq}, which is not an ISA IRQ (0-15)")]
    SerialIrqNotIsa {
        /// The port's I/O base.
        io_base: u16,
        /// Its IRQ.
        irq: u8,
    },
    /// Serial port devices are named COM1..COMF.
    #[error("{0} serial ports; at most 15 can be described")]
    TooManySerialPorts(usize),
    /// virtio-mmio devices are named VR00..VRFF.
    #[error("{0} virtio-mmio devices; at most 256 can be described")]
    TooManyVirtioMmio(usize),
    /// The hot-plug controller names a segment no host bridge of the platform has.
    #[error("hot-pluggable PCI segment {0} has no host bridge in the description")]
    HotplugSegmentWithoutRoot(u16),
    /// PCI host bridges are named PCI0..PCIF.
    #[error("{0} PCI host bridges; at most 16 can be described")]
    TooManyPciRoots(usize),
    /// Each host bridge is its own segment, and its `_UID` is the segment number.
    #[error("PCI segment {0} is given to more than one host bridge")]
    DuplicatePciSegment(u16),
    /// A host bridge's bus range is empty.
    #[error("PCI segment {segment}: bus range {start:#x}..={end:#x} is empty")]
    PciBusRange {
        /// The segment.
        segment: u16,
        /// First bus.
        start: u8,
        /// Last bus.
        end: u8,
    },
    /// A host bridge's memory window is empty (32-bit) or wraps around the address space.
    #[error("PCI segment {segment}: {window}-bit memory window at {base:#x}, length {len:#x}, is invalid")]
    PciWindow {
        /// The segment.
        segment: u16,
        /// 32 or 64.
        window: u8,
        /// Base of the window.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The ECAM region of a host bridge is not 1 MiB aligned or not entirely below 4 GiB.
    #[error(
        "PCI segment {segment}: ECAM at {base:#x} for buses {bus_start:#x}..={bus_end:#x} must be \
         1 MiB aligned and below 4 GiB"
    )]
    PciEcam {
        /// The segment.
        segment: u16,
        /// The ECAM base (bus 0).
        base: u64,
        /// First bus.
        bus_start: u8,
        /// Last bus.
        bus_end: u8,
    },
    /// The ECAM regions and memory windows of the host bridges must be disjoint: Linux inserts
    /// every window of every root into one resource tree and refuses a conflicting one, and two
    /// ECAMs at one address would be two segments answering the same configuration access.
    #[error(
        "PCI segment {segment}: its {what} at {start:#x} overlaps the {other_what} of PCI segment \
         {other_segment}"
    )]
    PciRangesOverlap {
        /// The segment of the range that starts later.
        segment: u16,
        /// Which of its ranges: "ECAM", "32-bit window" or "64-bit window".
        what: &'static str,
        /// Where it starts.
        start: u64,
        /// The segment of the range it overlaps (may be the same).
        other_segment: u16,
        /// Which of that segment's ranges.
        other_what: &'static str,
    },
    /// A VIOT PCI range whose last function comes before its first.
    #[error("VIOT PCI range {}..={} is empty", pci(.segment, .bdf_start), pci(.segment, .bdf_end))]
    ViotEmptyPciRange {
        /// The segment.
        segment: u16,
        /// First function.
        bdf_start: u16,
        /// Last function.
        bdf_end: u16,
    },
    /// Two VIOT PCI ranges share functions (Linux would give them the endpoint IDs of whichever
    /// range comes first).
    #[error(
        "VIOT PCI ranges {}..={} and {}..={} overlap",
        pci(.segment, &.first.0),
        pci(.segment, &.first.1),
        pci(.segment, &.second.0),
        pci(.segment, &.second.1)
    )]
    ViotPciRangesOverlap {
        /// The segment.
        segment: u16,
        /// First and last function of the range that starts first.
        first: (u16, u16),
        /// First and last function of the other one.
        second: (u16, u16),
    },
    /// The virtio-iommu's own PCI function is in a PCI range, or its own base is an MMIO
    /// endpoint.
    #[error("the virtio-iommu ({iommu}) is in its own VIOT scope: the IOMMU is never in its own scope")]
    ViotIommuInOwnScope {
        /// The IOMMU.
        iommu: ViotIommu,
    },
    /// VIOT PCI functions (the IOMMU's, or a range) that no host bridge of the platform decodes.
    #[error(
        "VIOT names PCI functions {}..={}, which are not below any PCI host bridge of the platform",
        pci(.segment, .bdf_start), pci(.segment, .bdf_end)
    )]
    ViotPciNotOnRoot {
        /// The segment.
        segment: u16,
        /// First function.
        bdf_start: u16,
        /// Last function.
        bdf_end: u16,
    },
    /// A VIOT MMIO base (the IOMMU's or an endpoint's) that is not the base of a virtio-mmio
    /// device of the platform: Linux finds MMIO IOMMUs and endpoints through the ACPI devices.
    #[error("VIOT names MMIO base {0:#x}, which is not the base of any virtio-mmio device of the platform")]
    ViotMmioNotDevice(u64),
    /// Two VIOT MMIO endpoints with the same base.
    #[error("VIOT MMIO endpoint {0:#x} is listed more than once")]
    ViotDuplicateMmioEndpoint(u64),
    /// A VIOT PCI range whose last endpoint ID would not fit 32 bits.
    #[error(
        "VIOT PCI range {}..={} from endpoint ID {endpoint_start:#x} runs past endpoint ID 0xffffffff",
        pci(.segment, .bdf_start), pci(.segment, .bdf_end)
    )]
    ViotEndpointIdOverflow {
        /// The segment.
        segment: u16,
        /// First function.
        bdf_start: u16,
        /// Last function.
        bdf_end: u16,
        /// Endpoint ID of the first function.
        endpoint_start: u32,
    },
    /// Two VIOT endpoints (PCI functions or MMIO devices) would share an endpoint ID, so the
    /// IOMMU could not tell their DMA apart.
    #[error("VIOT endpoint ID {0:#x} is given to more than one endpoint")]
    ViotEndpointIdReused(u32),
    /// The VIOT node count is 16 bits.
    #[error("{0} VIOT nodes; at most 65535 can be described")]
    TooManyViotNodes(usize),
    /// The tables do not fit in the region given to [`crate::build`].
    #[error("{table} ({len} bytes) does not fit in the ACPI region {start:#x}..{end:#x}")]
    DoesNotFit {
        /// Signature of the first table that did not fit.
        table: String,
        /// Its length in bytes.
        len: usize,
        /// Start of the region.
        start: u64,
        /// End (exclusive) of the region.
        end: u64,
    },
    /// Writing a dump file failed.
    #[error("cannot write {}: {source}", path.display())]
    Dump {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
