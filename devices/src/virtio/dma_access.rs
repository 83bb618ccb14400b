//! How a virtio device's DMA reaches guest memory, and what that means for
//! `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.3, 6 "Reserved Feature Bits").
//!
//! The transport owns this bit: it offers it, or not, from the
//! [`DmaAccess`] it was built with and enforces it at `FEATURES_OK`, so a
//! device model never sets it and cannot contradict the firmware's
//! description of the device.

/// `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.3, 6): the device accesses memory
/// the way the platform's DMA does (through an IOMMU if there is one), not
/// by guest-physical address. Offered by the transport from its
/// [`DmaAccess`], never by a device model.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;

/// The DMA path of one virtio device, handed to its transport: the one
/// value that decides whether `VIRTIO_F_ACCESS_PLATFORM` is offered and
/// whether the driver must accept it.
///
/// The DMA contract maps the device's `direct-ram-access` and `dma-pool`
/// settings onto it:
///
/// | `direct-ram-access` | `dma-pool` | IOMMU covering the device | variant | `ACCESS_PLATFORM` |
/// |---|---|---|---|---|
/// | `on` | none | (never) | [`Self::GuestPhysical`] | not offered |
/// | `off` | none | none | [`Self::PlatformIdentity`] | offered, not required |
/// | `off` | none | yes | [`Self::Translated`] | offered and required |
/// | `off` | `SIZE` | (never) | [`Self::RestrictedPool`] | offered and required |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaAccess {
    /// The device reads and writes guest-physical addresses itself
    /// (`direct-ram-access=on`). `VIRTIO_F_ACCESS_PLATFORM` is not offered,
    /// so the driver hands it guest-physical addresses without going through
    /// its DMA API. Also the virtio-iommu's own path: it is never behind
    /// itself.
    GuestPhysical,
    /// The device goes through the platform's DMA API but no IOMMU covers it
    /// (`direct-ram-access=off` without an IOMMU): `VIRTIO_F_ACCESS_PLATFORM`
    /// is offered and not required; a driver that accepts it maps buffers
    /// through its DMA API, which yields the identity here.
    PlatformIdentity,
    /// An IOMMU translates every access of the device (`direct-ram-access=off`
    /// with an IOMMU whose scope holds the device): `VIRTIO_F_ACCESS_PLATFORM`
    /// is offered and required. A driver that does not accept it would hand
    /// the device guest-physical addresses the IOMMU does not map, so
    /// `FEATURES_OK` is refused.
    Translated,
    /// The device is confined to a restricted DMA pool (`dma-pool=SIZE`):
    /// `VIRTIO_F_ACCESS_PLATFORM` is offered and required. Only a driver
    /// that uses its DMA API bounces buffers through the pool; one that
    /// refuses the feature would hand the device buffers anywhere in RAM,
    /// every one refused, so `FEATURES_OK` is refused.
    RestrictedPool,
}

impl DmaAccess {
    /// Whether the transport offers `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn offers_access_platform(self) -> bool {
        match self {
            Self::GuestPhysical => false,
            Self::PlatformIdentity | Self::Translated | Self::RestrictedPool => true,
        }
    }

    /// Whether `FEATURES_OK` is refused unless the driver accepted
    /// `VIRTIO_F_ACCESS_PLATFORM`.
    pub fn requires_access_platform(self) -> bool {
        match self {
            Self::GuestPhysical | Self::PlatformIdentity => false,
            Self::Translated | Self::RestrictedPool => true,
        }
    }

    /// The feature bits the transport adds to what the device offers.
    pub(crate) fn offered_features(self) -> u64 {
        if self.offers_access_platform() {
            VIRTIO_F_ACCESS_PLATFORM
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_platform_follows_the_dma_path() {
        let cases = [
            (DmaAccess::GuestPhysical, false, false),
            (DmaAccess::PlatformIdentity, true, false),
            (DmaAccess::Translated, true, true),
            (DmaAccess::RestrictedPool, true, true),
        ];
        for (access, offered, required) in cases {
            assert_eq!(access.offers_access_platform(), offered, "{access:?}");
            assert_eq!(access.requires_access_platform(), required, "{access:?}");
            assert_eq!(access.offered_features() != 0, offered, "{access:?}");
            // Required implies offered: a driver cannot accept what it was
            // never shown.
            assert!(!required || offered, "{access:?}");
        }
    }
}
