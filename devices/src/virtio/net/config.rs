//! What the virtio-net device offers (virtio 1.2, 5.1.3) and its
//! configuration space (5.1.4): the MAC address, the link status, and one
//! queue pair.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};

use crate::virtio::device::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::backend::Offloads;

/// Every feature the device offers. The header passes between the guest
/// and the TAP unchanged (both use `struct virtio_net_hdr_v1`), so the
/// checksum and segmentation offloads cost the device nothing: the host
/// kernel finishes what the guest left undone (`CSUM`, `HOST_TSO4/6`), and
/// the TAP is told with `TUNSETOFFLOAD` what the guest accepts unfinished
/// (`GUEST_CSUM`, `GUEST_TSO4/6`). Neither `CTRL_VQ` nor `MQ`: one queue
/// pair, no receive filtering to program.
pub(crate) const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_MAC
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_MRG_RXBUF
    | 1 << VIRTIO_NET_F_STATUS;

/// Whether `acked` features include `VIRTIO_NET_F_MRG_RXBUF`.
pub(crate) fn mergeable(acked: u64) -> bool {
    acked & 1 << VIRTIO_NET_F_MRG_RXBUF != 0
}

/// What the TAP may hand the device unfinished, from the features the
/// driver accepted. The TSO offloads need `GUEST_CSUM` too (5.1.3.1: a
/// driver cannot take segmentation without checksum offload, and the TAP
/// refuses TSO without `TUN_F_CSUM`).
pub(crate) fn offloads(acked: u64) -> Offloads {
    let has = |bit: u32| acked & 1 << bit != 0;
    let csum = has(VIRTIO_NET_F_GUEST_CSUM);
    Offloads { csum, tso4: csum && has(VIRTIO_NET_F_GUEST_TSO4), tso6: csum && has(VIRTIO_NET_F_GUEST_TSO6) }
}

/// `struct virtio_net_config` up to `max_virtqueue_pairs`: `mac[6]`,
/// `status` (le16), `max_virtqueue_pairs` (le16).
const LEN: usize = 10;

/// The configuration space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigSpace {
    bytes: [u8; LEN],
}

impl ConfigSpace {
    /// The link always reads as up: the device cannot see the TAP's
    /// carrier without polling, and a TAP that is down drops what the guest
    /// sends, which the guest's protocols already handle.
    pub(crate) fn new(mac: [u8; 6]) -> Self {
        let mut bytes = [0u8; LEN];
        bytes[..6].copy_from_slice(&mac);
        bytes[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        Self { bytes }
    }

    /// Copies the bytes at `offset..offset + data.len()`; bytes past the end
    /// read as zero.
    pub(crate) fn read(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::config_bytes::read_config_bytes(&self.bytes, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_layout() {
        let c = ConfigSpace::new([0x02, 1, 2, 3, 4, 5]);
        let mut all = [0xffu8; 16];
        c.read(0, &mut all);
        assert_eq!(all, [0x02, 1, 2, 3, 4, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut status = [0u8; 2];
        c.read(6, &mut status);
        assert_eq!(u16::from_le_bytes(status), 1, "VIRTIO_NET_S_LINK_UP");
        let mut far = [0xffu8; 2];
        c.read(u64::MAX, &mut far);
        assert_eq!(far, [0, 0]);
    }

    #[test]
    fn tso_offloads_need_guest_csum() {
        let tso = 1 << VIRTIO_NET_F_GUEST_TSO4 | 1 << VIRTIO_NET_F_GUEST_TSO6;
        assert_eq!(offloads(tso), Offloads::default());
        let all = offloads(tso | 1 << VIRTIO_NET_F_GUEST_CSUM);
        assert_eq!(all, Offloads { csum: true, tso4: true, tso6: true });
        assert_eq!(offloads(0), Offloads::default());
    }
}
