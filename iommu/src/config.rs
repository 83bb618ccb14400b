//! How a virtio-iommu is built ([`IommuConfig`]), the feature bits it offers
//! and its device configuration space (virtio 1.2, 5.13.3 and 5.13.4).

use crate::error::IommuError;

/// `VIRTIO_IOMMU_F_INPUT_RANGE` (5.13.3): `input_range` is valid.
pub const VIRTIO_IOMMU_F_INPUT_RANGE: u64 = 1 << 0;
/// `VIRTIO_IOMMU_F_DOMAIN_RANGE`: `domain_range` is valid.
pub const VIRTIO_IOMMU_F_DOMAIN_RANGE: u64 = 1 << 1;
/// `VIRTIO_IOMMU_F_MAP_UNMAP`: MAP and UNMAP requests are available.
pub const VIRTIO_IOMMU_F_MAP_UNMAP: u64 = 1 << 2;
/// `VIRTIO_IOMMU_F_BYPASS` (superseded by `BYPASS_CONFIG`, never offered).
pub const VIRTIO_IOMMU_F_BYPASS: u64 = 1 << 3;
/// `VIRTIO_IOMMU_F_PROBE`: the PROBE request is available.
pub const VIRTIO_IOMMU_F_PROBE: u64 = 1 << 4;
/// `VIRTIO_IOMMU_F_MMIO`: the `VIRTIO_IOMMU_MAP_F_MMIO` flag is available.
pub const VIRTIO_IOMMU_F_MMIO: u64 = 1 << 5;
/// `VIRTIO_IOMMU_F_BYPASS_CONFIG`: the `bypass` configuration field and the
/// `VIRTIO_IOMMU_ATTACH_F_BYPASS` flag are available.
pub const VIRTIO_IOMMU_F_BYPASS_CONFIG: u64 = 1 << 6;

/// 4 KiB: the smallest page of every guest dmavm runs (x86-64, and arm64
/// with 4 KiB pages). Linux refuses an IOMMU whose granule is larger than
/// its own page size, so the granule is the guest's page, not the host's.
pub const DEFAULT_PAGE_SIZE_MASK: u64 = !(4096 - 1);
/// Last input address by default: 48-bit IOVAs (see [`IommuConfig::input_range`]).
pub const DEFAULT_INPUT_END: u64 = (1 << 48) - 1;
/// Properties buffer size by default: room for 21 RESV_MEM properties and
/// the terminator (QEMU uses the same size).
pub const DEFAULT_PROBE_SIZE: u32 = 512;
/// The x86 MSI doorbell window (Intel SDM 10.11.1): device writes there are
/// interrupts, never translated.
pub const X86_MSI_REGION: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
/// Most mappings one virtio-iommu may hold, all its domains together (one
/// domain may take them all); MAP beyond it fails with
/// `VIRTIO_IOMMU_S_NOMEM` ("insufficient resources", virtio 1.2, 5.13.6).
/// 2^20 mappings of 4 KiB cover 4 GiB,
/// every page of a guest of that size mapped separately; each costs about
/// 66 bytes of host memory (at most 68 MiB for all). The endpoints' IOTLBs
/// cache translations on top of that, bounded separately by
/// [`DEFAULT_IOTLB_ENTRIES`], so the IOMMU's host memory stays under
/// 75 MiB however many endpoints share a domain (measured: 72.5 MiB for a
/// flood of 2^21 MAP requests to one domain of 8 endpoints,
/// docs/benchmarks.md and docs/limits.md).
pub const DEFAULT_MAX_MAPPINGS: usize = 1 << 20;
/// Most entries all endpoints' IOTLBs together may cache by default (about
/// 6 MiB of host memory at worst, see [`IommuConfig::iotlb_entries`]).
pub const DEFAULT_IOTLB_ENTRIES: usize = 1 << 16;
/// Largest `probe_size` accepted.
pub const MAX_PROBE_SIZE: u32 = 64 * 1024;
/// Size of one RESV_MEM property in the PROBE reply (header included).
pub const RESV_MEM_PROPERTY_SIZE: u32 = 24;
/// Size of the property header that ends the list (`VIRTIO_IOMMU_PROBE_T_NONE`).
pub const PROPERTY_HEADER_SIZE: u32 = 4;

/// Whether one translated domain may hold endpoints of different declared
/// DMA coherency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MixedCoherency {
    /// Any endpoints may share a domain (what hardware IOMMUs do).
    #[default]
    Allow,
    /// ATTACH of an endpoint to a translated domain whose endpoints have
    /// the other coherency fails with `VIRTIO_IOMMU_S_UNSUPP` (virtio 1.2,
    /// 5.13.6.3.2: endpoint properties incompatible with the domain's), so
    /// that the driver keeps them in separate domains: mappings of one
    /// domain carry one set of memory attributes, and a guest that maps
    /// for a non-coherent device (non-cacheable) and a coherent one in the
    /// same domain gets one of them wrong. Bypass domains have no mappings
    /// and are never refused.
    Reject,
}

/// How to build a virtio-iommu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuConfig {
    /// `page_size_mask`: the page sizes mappings may use; the lowest set bit
    /// is the granule MAP addresses must be aligned to.
    pub page_size_mask: u64,
    /// `input_range` (inclusive): the IOVAs the IOMMU translates. The
    /// default is 48 bits, the width of 4-level VT-d / AMD-Vi / SMMU page
    /// tables and of every DMA mask Linux uses in practice; it also keeps
    /// every mapping's exclusive end representable in 64 bits, which
    /// vm-memory's IOTLB (half-open `u64` ranges) needs. `end` must be below
    /// `u64::MAX`.
    pub input_range: (u64, u64),
    /// `domain_range` (inclusive): the domain IDs a driver may use. The
    /// range does not bound the domains that exist: a domain is created by
    /// the first ATTACH to it and freed when its last endpoint leaves (an
    /// endpoint is in at most one domain), so there are never more domains
    /// than endpoints, whatever IDs the driver uses.
    pub domain_range: (u32, u32),
    /// `probe_size`: bytes of properties in a PROBE reply.
    pub probe_size: u32,
    /// Initial value of the `bypass` field (virtio 1.2, 5.13.4: "MAY
    /// initialize to 1"): whether endpoints not attached to a domain reach
    /// guest memory untranslated. The default is `false`, so an endpoint in
    /// the IOMMU's scope can touch nothing until the driver has attached it
    /// and mapped memory for it (the DMA contract's `direct-ram-access=off`).
    /// Linux never writes the field: it attaches every endpoint to a DMA or
    /// identity (`ATTACH_F_BYPASS`) domain when it probes it.
    pub boot_bypass: bool,
    /// The MSI doorbell window reported by PROBE as a RESV_MEM property of
    /// subtype MSI, so that the guest neither maps IOVAs there nor sets up
    /// software MSI mappings ([`X86_MSI_REGION`] on x86; `None` where MSIs
    /// are translated, e.g. an arm64 GIC ITS).
    pub msi_region: Option<(u64, u64)>,
    /// Most mappings all domains together may hold (a per-IOMMU cap, not
    /// per domain); MAP past it gets `VIRTIO_IOMMU_S_NOMEM`.
    pub max_mappings: usize,
    /// Most entries all endpoints' IOTLBs together may cache. Each
    /// endpoint gets an equal share (`iotlb_entries / endpoints`, fixed at
    /// construction); an IOTLB that would pass its share starts over empty
    /// and refills from its domain's mappings on later misses, so the
    /// bound holds whatever the guest maps and however many endpoints it
    /// attaches to one domain. A translation needing more entries than the
    /// share is served without being cached.
    pub iotlb_entries: usize,
    /// Whether a translated domain may mix coherent and non-coherent
    /// endpoints.
    pub mixed_coherency: MixedCoherency,
    /// The endpoints whose device is declared non-coherent (`coherent=off`);
    /// each must be one of the endpoints the device is built with.
    pub noncoherent_endpoints: Vec<u32>,
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self {
            page_size_mask: DEFAULT_PAGE_SIZE_MASK,
            input_range: (0, DEFAULT_INPUT_END),
            domain_range: (0, u32::MAX),
            probe_size: DEFAULT_PROBE_SIZE,
            boot_bypass: false,
            msi_region: Some(X86_MSI_REGION),
            max_mappings: DEFAULT_MAX_MAPPINGS,
            iotlb_entries: DEFAULT_IOTLB_ENTRIES,
            mixed_coherency: MixedCoherency::Allow,
            noncoherent_endpoints: Vec::new(),
        }
    }
}

impl IommuConfig {
    /// The page granule: the lowest page size in `page_size_mask`.
    pub fn granule(&self) -> u64 {
        // `page_size_mask` is non-zero once validated.
        1u64 << self.page_size_mask.trailing_zeros().min(63)
    }

    pub(crate) fn validate(&self) -> Result<(), IommuError> {
        if self.page_size_mask == 0 {
            return Err(IommuError::PageSizeMask);
        }
        let (start, end) = self.input_range;
        if start > end || end == u64::MAX {
            return Err(IommuError::InputRange { start, end });
        }
        let (start, end) = self.domain_range;
        if start > end {
            return Err(IommuError::DomainRange { start, end });
        }
        if self.probe_size > MAX_PROBE_SIZE {
            return Err(IommuError::ProbeSizeTooLarge(self.probe_size));
        }
        Ok(())
    }
}

/// Byte offsets of `struct virtio_iommu_config` (little-endian).
pub(crate) mod offset {
    pub(crate) const PAGE_SIZE_MASK: usize = 0;
    pub(crate) const INPUT_START: usize = 8;
    pub(crate) const INPUT_END: usize = 16;
    pub(crate) const DOMAIN_START: usize = 24;
    pub(crate) const DOMAIN_END: usize = 28;
    pub(crate) const PROBE_SIZE: usize = 32;
    pub(crate) const BYPASS: usize = 36;
    /// Size of the structure (3 reserved bytes follow `bypass`).
    pub(crate) const LEN: usize = 40;
}

/// The configuration space as the driver reads it, with `bypass` as it is
/// now.
pub(crate) fn config_bytes(config: &IommuConfig, bypass: bool) -> [u8; offset::LEN] {
    let mut bytes = [0u8; offset::LEN];
    let mut put = |at: usize, value: &[u8]| bytes[at..at + value.len()].copy_from_slice(value);
    put(offset::PAGE_SIZE_MASK, &config.page_size_mask.to_le_bytes());
    put(offset::INPUT_START, &config.input_range.0.to_le_bytes());
    put(offset::INPUT_END, &config.input_range.1.to_le_bytes());
    put(offset::DOMAIN_START, &config.domain_range.0.to_le_bytes());
    put(offset::DOMAIN_END, &config.domain_range.1.to_le_bytes());
    put(offset::PROBE_SIZE, &config.probe_size.to_le_bytes());
    put(offset::BYPASS, &[u8::from(bypass)]);
    bytes
}

/// Copies `bytes[offset..offset + data.len()]` into `data`; bytes past the
/// end read as zero.
pub(crate) fn read_bytes(bytes: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        *out = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| bytes.get(o))
            .copied()
            .unwrap_or(0);
    }
}
