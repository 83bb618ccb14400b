//! How one device reaches guest memory: the single decision the DMA
//! contract makes per device, from its `direct-ram-access` and `dma-pool`
//! properties (or its bridge's) and the machine's IOMMU.
//!
//! Everything else follows from it: whether the virtio transport offers
//! `VIRTIO_F_ACCESS_PLATFORM` and insists on it at `FEATURES_OK` (virtio
//! 1.3, 6.1), whether the firmware puts the device in the IOMMU's scope
//! (VIOT node, `iommus`, `iommu-map` entry), and which memory handle the
//! VM runner gives the device model (guest memory as it is, or a
//! translating view bound to the device's endpoint).

use serde::{Deserialize, Serialize};

/// The path of a device's DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DmaPath {
    /// `direct-ram-access=on`: guest-physical addresses, outside every
    /// IOMMU's scope; `VIRTIO_F_ACCESS_PLATFORM` is not offered, so the
    /// driver bypasses the guest's DMA API.
    Direct,
    /// `direct-ram-access=off` on a machine without an IOMMU:
    /// `VIRTIO_F_ACCESS_PLATFORM` is offered and the guest's DMA API maps
    /// buffers one to one, so the device still sees guest-physical
    /// addresses.
    Identity,
    /// `direct-ram-access=off` with an IOMMU: every ring and buffer address
    /// is an I/O virtual address of this endpoint, translated through the
    /// IOMMU; `VIRTIO_F_ACCESS_PLATFORM` is offered and required.
    Translated {
        /// The device's endpoint ID in the IOMMU's scope.
        endpoint: u32,
    },
    /// `dma-pool=SIZE` (the device's or its bridge's): the device reaches
    /// only its restricted DMA pool, `size` bytes of guest RAM from
    /// `base` that the device tree declares as a `restricted-dma-pool`
    /// reserved-memory region with `memory-region` on the device (or its
    /// bridge). `VIRTIO_F_ACCESS_PLATFORM` is offered and required: only
    /// the guest's DMA API bounces buffers into the pool. Addresses are
    /// guest-physical; the device model refuses every access outside the
    /// pool.
    Pool {
        /// Guest-physical base of the pool.
        base: u64,
        /// Its size in bytes.
        size: u64,
    },
}

/// Which firmware node names a restricted DMA pool with `memory-region`:
/// Linux looks at the device's own node first and then at the node that
/// configures its DMA, a PCI function's host bridge (`of_dma_set_restricted_buffer()`
/// in drivers/of/device.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolOwner {
    /// The device's own pool (`dma-pool=` on the device): its virtio-mmio
    /// node, or its PCI function's node below the host bridge.
    Device,
    /// Its host bridge's pool (`--pci-bridge ...,dma-pool=`), shared by every
    /// function below the bridge without a pool of its own: on the bridge
    /// node.
    Bridge,
}

/// A restricted DMA pool placed in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaPool {
    /// Guest-physical base, aligned to [`POOL_ALIGN`].
    pub base: u64,
    /// Size in bytes (a whole number of swiotlb segments).
    pub size: u64,
    /// Whose pool it is.
    pub owner: PoolOwner,
}

impl DmaPool {
    /// One past its last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// Alignment of a restricted DMA pool's base: 2 MiB. Linux maps a pool
/// (never `no-map`) in its linear map and may change its attributes page by
/// page (`set_memory_decrypted()` in `rmem_swiotlb_device_init()`); a 2 MiB
/// aligned pool covers whole pages of every arm64 page size (4K, 16K, 64K)
/// and whole level-2 blocks of the 4K granule, so it splits no block
/// mapping of the memory around it.
pub const POOL_ALIGN: u64 = 2 << 20;

impl DmaPath {
    /// Whether the transport offers `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn offers_access_platform(self) -> bool {
        self != DmaPath::Direct
    }

    /// The endpoint ID when an IOMMU translates the device's accesses.
    pub fn endpoint(self) -> Option<u32> {
        match self {
            DmaPath::Translated { endpoint } => Some(endpoint),
            DmaPath::Direct | DmaPath::Identity | DmaPath::Pool { .. } => None,
        }
    }

    /// The guest-physical range `(base, size)` the device is confined to.
    pub fn pool(self) -> Option<(u64, u64)> {
        match self {
            DmaPath::Pool { base, size } => Some((base, size)),
            DmaPath::Direct | DmaPath::Identity | DmaPath::Translated { .. } => None,
        }
    }
}
