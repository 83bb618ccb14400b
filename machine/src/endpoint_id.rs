//! Endpoint IDs: how the IOMMU names each device it may translate, the
//! same in the VIOT, in the device tree's `iommus`/`iommu-map` and in the
//! virtio-iommu's requests.
//!
//! PCI function `bdf` of segment `s` is endpoint `s << 16 | bdf`, so
//! functions of different segments never share one; virtio-mmio devices
//! follow above every segment's IDs, from `segments << 16` (0x10000 with
//! one bridge).

/// The requester ID of function 0 of `slot` on bus 0.
pub fn pci_bdf(slot: u8) -> u16 {
    u16::from(slot) << 3
}

/// The endpoint ID of function `bdf` of PCI segment `segment`.
pub fn pci_endpoint(segment: u16, bdf: u16) -> u32 {
    u32::from(segment) << 16 | u32::from(bdf)
}

/// The endpoint ID of the `index`th virtio-mmio device (counting every
/// virtio-mmio device, translated or not) on a machine with `segments` PCI
/// segments: above every PCI endpoint ID.
pub fn mmio_endpoint(segments: usize, index: u32) -> u32 {
    // At most 16 segments and 19 virtio-mmio devices: no overflow.
    ((segments as u32) << 16) + index
}
