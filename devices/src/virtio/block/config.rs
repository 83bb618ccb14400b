//! The virtio-blk device configuration space (virtio 1.2, 5.2.4): a
//! little-endian `struct virtio_blk_config` of which this device fills
//! `capacity`, `seg_max` and `blk_size`; every other field reads as zero
//! (the features that give them meaning are not offered).

use std::mem::{offset_of, size_of};

use virtio_bindings::virtio_blk::virtio_blk_config;

const LEN: usize = size_of::<virtio_blk_config>();

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigSpace {
    bytes: [u8; LEN],
}

impl ConfigSpace {
    pub(crate) fn new(capacity_sectors: u64, seg_max: u32, blk_size: u32) -> Self {
        let mut bytes = [0u8; LEN];
        let mut put =
            |offset: usize, value: &[u8]| bytes[offset..offset + value.len()].copy_from_slice(value);
        put(offset_of!(virtio_blk_config, capacity), &capacity_sectors.to_le_bytes());
        put(offset_of!(virtio_blk_config, seg_max), &seg_max.to_le_bytes());
        put(offset_of!(virtio_blk_config, blk_size), &blk_size.to_le_bytes());
        Self { bytes }
    }

    /// Copies the bytes at `offset..offset + data.len()`; bytes past the end
    /// of the structure read as zero.
    pub(crate) fn read(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::config_bytes::read_config_bytes(&self.bytes, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_at_their_offsets() {
        let c = ConfigSpace::new(0x1122_3344_5566_7788, 254, 512);
        let mut b = [0u8; 8];
        c.read(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0x1122_3344_5566_7788);
        let mut w = [0u8; 4];
        c.read(12, &mut w);
        assert_eq!(u32::from_le_bytes(w), 254);
        c.read(20, &mut w);
        assert_eq!(u32::from_le_bytes(w), 512);
        // size_max (8) and geometry (16) are zero.
        c.read(8, &mut w);
        assert_eq!(w, [0; 4]);
        c.read(16, &mut w);
        assert_eq!(w, [0; 4]);
        // Byte-wise reads of capacity.
        let mut one = [0u8; 1];
        c.read(7, &mut one);
        assert_eq!(one, [0x11]);
    }

    #[test]
    fn reads_past_the_end_are_zero() {
        let c = ConfigSpace::new(u64::MAX, u32::MAX, u32::MAX);
        let mut b = [0xffu8; 8];
        c.read(LEN as u64 - 4, &mut b);
        assert_eq!(b, [0; 8]);
        let mut b = [0xffu8; 4];
        c.read(u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
