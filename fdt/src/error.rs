//! Why a device tree could not be built, or a blob not read.

/// Errors from [`crate::build`], [`crate::validate`], [`crate::parse`] and [`crate::to_dts`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/cpus` would be empty.
    #[error("the machine has no CPUs")]
    NoCpus,
    /// Two vCPUs with the same MPIDR affinity: Linux could not tell them apart.
    #[error("MPIDR affinity {0:#x} is given to more than one CPU")]
    DuplicateMpidr(u64),
    /// There would be no `memory` node.
    #[error("the machine has no RAM")]
    NoMemory,
    /// A region of size 0.
    #[error("{0} is empty (size 0)")]
    EmptyRegion(String),
    /// A region that runs past the end of the 64-bit address space.
    #[error("{what} at {base:#x}, size {size:#x}, runs past the end of the address space")]
    RegionWraps {
        /// The region.
        what: String,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// Two regions of the address map share addresses.
    #[error("{first} ({first_range}) overlaps {second} ({second_range})")]
    Overlap {
        /// One region.
        first: String,
        /// Its range, `base..end`.
        first_range: String,
        /// The other.
        second: String,
        /// Its range.
        second_range: String,
    },
    /// Fewer than 128 KiB of redistributor space per vCPU.
    #[error(
        "the GIC redistributor region ({size:#x} bytes) is too small for {cpus} CPUs: each needs \
         {per_cpu:#x} bytes, {needed:#x} in all"
    )]
    RedistributorsTooSmall {
        /// vCPUs.
        cpus: usize,
        /// Size given.
        size: u64,
        /// Size per vCPU.
        per_cpu: u64,
        /// Size needed.
        needed: u64,
    },
    /// An SPI number beyond the GICv3's 988 SPIs (INTIDs 32-1019).
    #[error("{what} uses SPI {spi}, but GICv3 SPIs are numbered 0-987")]
    SpiOutOfRange {
        /// Whose interrupt.
        what: String,
        /// The SPI.
        spi: u32,
    },
    /// A PPI number beyond 15.
    #[error("the timer's {what} interrupt is PPI {ppi}, but PPIs are numbered 0-15")]
    PpiOutOfRange {
        /// Which timer interrupt.
        what: &'static str,
        /// The PPI.
        ppi: u32,
    },
    /// Two devices on one SPI (virtio-mmio interrupts are edge triggered and cannot be shared).
    #[error("SPI {spi} is given to both {first} and {second}")]
    SharedSpi {
        /// The SPI.
        spi: u32,
        /// One device.
        first: String,
        /// The other.
        second: String,
    },
    /// The UART's clock frequency is 0.
    #[error("the UART's clock frequency is 0 Hz")]
    NoUartClock,
    /// The initrd is not entirely inside one RAM range.
    #[error("the initrd at {base:#x}, size {size:#x}, is not inside RAM")]
    InitrdOutsideRam {
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A string property (model, command line) with a NUL byte, which would cut it short.
    #[error("{0} contains a NUL byte")]
    NulInString(&'static str),
    /// Two host bridges claim the same PCI domain.
    #[error("PCI segment {0} is given to more than one host bridge")]
    DuplicatePciSegment(u16),
    /// A host bridge whose last bus comes before its first.
    #[error("PCI segment {segment}: bus range {start:#x}..={end:#x} is empty")]
    PciBusRange {
        /// The segment.
        segment: u16,
        /// First bus.
        start: u8,
        /// Last bus.
        end: u8,
    },
    /// An ECAM base that is not 1 MiB aligned.
    #[error("PCI segment {segment}: ECAM base {base:#x} is not 1 MiB aligned")]
    PciEcamAlignment {
        /// The segment.
        segment: u16,
        /// The ECAM base.
        base: u64,
    },
    /// A 32-bit memory window that reaches above 4 GiB.
    #[error(
        "PCI segment {segment}: the 32-bit memory window {base:#x}, size {size:#x}, does not end below 4 GiB"
    )]
    PciMem32Above4G {
        /// The segment.
        segment: u16,
        /// Window base.
        base: u64,
        /// Window size.
        size: u64,
    },
    /// An I/O window larger than the 64 KiB of PCI I/O space.
    #[error("PCI segment {segment}: the I/O window has {size:#x} ports, at most 0x10000 exist")]
    PciIoTooLarge {
        /// The segment.
        segment: u16,
        /// Its size.
        size: u64,
    },
    /// PCI host bridges without an ITS: their devices would have no interrupts at all.
    #[error("the machine has PCI host bridges but its GIC has no ITS for their MSIs")]
    NoIts,
    /// ITS DeviceIDs that run past 32 bits.
    #[error("PCI segment {segment}: ITS DeviceIDs from {base:#x} run past 0xffffffff")]
    ItsDeviceIdOverflow {
        /// The segment.
        segment: u16,
        /// Its DeviceID base.
        base: u32,
    },
    /// Two bridges whose functions would share ITS DeviceIDs, so their MSIs could not be told
    /// apart.
    #[error("PCI segments {first} and {second} share ITS DeviceIDs")]
    ItsDeviceIdsOverlap {
        /// One segment.
        first: u16,
        /// The other.
        second: u16,
    },
    /// An `iommu-map` range whose last requester ID comes before its first.
    #[error("PCI segment {segment}: IOMMU range of requester IDs {start:#06x}..={end:#06x} is empty")]
    IommuRangeEmpty {
        /// The segment.
        segment: u16,
        /// First RID.
        start: u16,
        /// Last RID.
        end: u16,
    },
    /// An `iommu-map` range with requester IDs of buses the bridge does not decode.
    #[error(
        "PCI segment {segment}: IOMMU range of requester IDs {start:#06x}..={end:#06x} is not within \
         the bridge's buses {bus_start:#x}..={bus_end:#x}"
    )]
    IommuRangeOutsideBuses {
        /// The segment.
        segment: u16,
        /// First RID.
        start: u16,
        /// Last RID.
        end: u16,
        /// The bridge's first bus.
        bus_start: u8,
        /// Its last bus.
        bus_end: u8,
    },
    /// Two `iommu-map` ranges of one bridge share requester IDs.
    #[error(
        "PCI segment {segment}: IOMMU ranges of requester IDs {:#06x}..={:#06x} and {:#06x}..={:#06x} overlap",
        .first.0, .first.1, .second.0, .second.1
    )]
    IommuRangesOverlap {
        /// The segment.
        segment: u16,
        /// First and last RID of one range.
        first: (u16, u16),
        /// Of the other.
        second: (u16, u16),
    },
    /// A range whose last endpoint ID would not fit 32 bits.
    #[error("{0}: endpoint IDs run past 0xffffffff")]
    EndpointIdOverflow(String),
    /// Two endpoints would share an endpoint ID, so the IOMMU could not tell their DMA apart.
    #[error("endpoint ID {id:#x} is given to both {first} and {second}")]
    EndpointIdReused {
        /// The endpoint ID.
        id: u32,
        /// One endpoint.
        first: String,
        /// The other.
        second: String,
    },
    /// A translated device on a machine without a virtio-iommu: its `iommus` or `iommu-map`
    /// would point at no node.
    #[error("{0} is translated by the virtio-iommu, but the machine has none")]
    NoIommu(String),
    /// The virtio-iommu is in its own scope (the IOMMU never translates its own DMA).
    #[error("the virtio-iommu ({0}) is in its own scope: the IOMMU is never in its own scope")]
    IommuInOwnScope(String),
    /// [`crate::VirtioIommu::Mmio`] names no virtio-mmio device.
    #[error("the virtio-iommu is at {0:#x}, which is not the base of any virtio-mmio device of the machine")]
    IommuNotMmioDevice(u64),
    /// [`crate::VirtioIommu::Pci`] names a function that is not on the root bus of a host bridge
    /// (Linux finds the IOMMU's node among the host bridge's children).
    #[error("the virtio-iommu {0} is not on the root bus of any PCI host bridge of the machine")]
    IommuNotOnRootBus(String),
    /// A restricted DMA pool not inside one RAM range, or empty.
    #[error("restricted DMA pool {index} at {base:#x}, size {size:#x}, is not inside RAM")]
    DmaPoolOutsideRam {
        /// Its index in the machine's pools.
        index: usize,
        /// Its base.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A restricted DMA pool whose base is not page aligned (Linux maps and re-attributes a pool
    /// page by page).
    #[error("restricted DMA pool {index} at {base:#x} is not 4 KiB aligned")]
    DmaPoolAlignment {
        /// Its index.
        index: usize,
        /// Its base.
        base: u64,
    },
    /// Two restricted DMA pools, or a pool and the initrd, share memory.
    #[error("restricted DMA pool {index} ({range}) overlaps {other}")]
    DmaPoolOverlap {
        /// Its index.
        index: usize,
        /// Its range.
        range: String,
        /// What it overlaps.
        other: String,
    },
    /// A device names a pool the machine does not have.
    #[error("{0} names restricted DMA pool {1}, which the machine does not have")]
    NoSuchDmaPool(String, usize),
    /// A PCI function with a node of its own named twice, or not on its bridge's first bus.
    #[error("{0}: a PCI function with a pool of its own must be on its bridge's first bus, once")]
    PciFunctionNode(String),
    /// vm-fdt refused a node or property.
    #[error("device tree encoding failed: {0}")]
    Encode(#[from] vm_fdt::Error),
    /// The blob is larger than arm64 Linux accepts.
    #[error("the device tree blob is {0} bytes, more than the 2 MiB arm64 Linux accepts")]
    TooLarge(usize),
    /// A blob that is not a well-formed flattened device tree.
    #[error("malformed device tree blob at offset {offset:#x}: {what}")]
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}
