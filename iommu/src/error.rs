//! Why a virtio-iommu cannot be built.

/// A rejected [`IommuConfig`](crate::IommuConfig), endpoint list or
/// reserved-region list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IommuError {
    /// `page_size_mask` has no bit set (virtio 1.2, 5.13.4: at least one).
    #[error("page_size_mask must have at least one bit set")]
    PageSizeMask,
    /// The input range is empty or ends at `u64::MAX`.
    #[error("input range {start:#x}..={end:#x} is empty or ends at 2^64 - 1")]
    InputRange { start: u64, end: u64 },
    /// The domain range is empty.
    #[error("domain range {start}..={end} is empty")]
    DomainRange { start: u32, end: u32 },
    /// `probe_size` is larger than [`MAX_PROBE_SIZE`](crate::config::MAX_PROBE_SIZE).
    #[error("probe_size {0} is larger than the supported maximum")]
    ProbeSizeTooLarge(u32),
    /// The reserved regions do not fit `probe_size` with a terminator.
    #[error("probe_size {probe_size} cannot hold the reserved regions' properties ({needed} bytes)")]
    ProbeSizeTooSmall { probe_size: u32, needed: u64 },
    /// An endpoint ID was given twice.
    #[error("endpoint {0} is listed twice")]
    DuplicateEndpoint(u32),
    /// A reserved region (or the MSI region) is empty.
    #[error("reserved region {start:#x}..={end:#x} is empty")]
    EmptyRegion { start: u64, end: u64 },
    /// A non-coherent endpoint is not among the IOMMU's endpoints.
    #[error("endpoint {0:#x} is declared non-coherent but is not in the IOMMU's scope")]
    UnknownNoncoherentEndpoint(u32),
    /// Two reserved regions (the MSI region included) overlap.
    #[error("reserved regions {0:#x}..={1:#x} and {2:#x}..={3:#x} overlap")]
    OverlappingRegions(u64, u64, u64, u64),
}
