//! How one device reaches guest memory: the single decision the DMA
//! contract makes per device, from its `direct-ram-access` property (or
//! its bridge's) and the machine's IOMMU.
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
}

impl DmaPath {
    /// Whether the transport offers `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn offers_access_platform(self) -> bool {
        self != DmaPath::Direct
    }

    /// The endpoint ID when an IOMMU translates the device's accesses.
    pub fn endpoint(self) -> Option<u32> {
        match self {
            DmaPath::Translated { endpoint } => Some(endpoint),
            DmaPath::Direct | DmaPath::Identity => None,
        }
    }
}
