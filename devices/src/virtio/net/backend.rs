//! Where the device's frames go and come from: a TAP in dmavm, a socket
//! pair or an in-memory queue in tests. A frame is what the TAP reads and
//! writes with `IFF_VNET_HDR` and a header size of [`VNET_HDR_LEN`]: a
//! `struct virtio_net_hdr_v1` followed by the Ethernet frame.

use std::os::fd::RawFd;

/// Bytes of `struct virtio_net_hdr_v1` (virtio 1.2, 5.1.6): the header of
/// every frame in both directions once `VIRTIO_F_VERSION_1` is negotiated,
/// with or without `VIRTIO_NET_F_MRG_RXBUF`.
pub const VNET_HDR_LEN: usize = 12;

/// Offset of `num_buffers` in the header.
pub(crate) const NUM_BUFFERS_OFFSET: usize = 10;

/// Largest frame the device moves: the header, a 64 KiB segmentation
/// super-frame and an Ethernet header with a VLAN tag.
pub const FRAME_MAX: usize = VNET_HDR_LEN + 65_535 + 18;

/// What a backend may hand the device without the work done: a partial
/// checksum (`csum`), TCP segments of more than one MTU (`tso4`, `tso6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// `TUN_F_CSUM`.
    pub csum: bool,
    /// `TUN_F_TSO4`.
    pub tso4: bool,
    /// `TUN_F_TSO6`.
    pub tso6: bool,
}

/// The host end of a virtio-net device. Non-blocking: the event loop calls
/// it when [`Self::readiness_fd`] is readable, and on the guest's
/// notifications.
pub trait NetBackend: Send {
    /// Reads one frame into `buf` (at least [`FRAME_MAX`] bytes) and
    /// returns its length; `WouldBlock` when no frame is waiting.
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;

    /// Sends one frame, whole or not at all.
    fn write_frame(&mut self, frame: &GuestFrame<'_>) -> std::io::Result<()>;

    /// Tells the backend what the guest accepts unfinished.
    fn set_offloads(&mut self, offloads: Offloads) -> std::io::Result<()>;

    /// The descriptor that becomes readable when a frame is waiting.
    fn readiness_fd(&self) -> RawFd;
}

/// A transmit frame where the driver put it: the pieces of guest memory its
/// chain's buffers translate to, in order, header first. The device hands
/// it to the backend as it is, so that a TAP takes it with one `writev(2)`
/// and the frame is copied once (by the kernel), not twice.
pub struct GuestFrame<'a> {
    iov: &'a [libc::iovec],
    len: usize,
}

impl<'a> GuestFrame<'a> {
    /// The frame made of `iov`.
    ///
    /// # Safety
    ///
    /// Every entry of `iov` points to `iov_len` bytes of mapped memory that
    /// stays mapped for `'a` (guest memory the device holds).
    pub(crate) unsafe fn new(iov: &'a [libc::iovec]) -> Self {
        let len = iov.iter().map(|v| v.iov_len).sum();
        Self { iov, len }
    }

    /// Its length in bytes, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes (never, for a frame the device sends).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, for `writev(2)` and the like.
    pub fn iovecs(&self) -> &[libc::iovec] {
        self.iov
    }

    /// The frame's bytes, copied out: for backends that cannot take the
    /// pieces. The guest may be changing them meanwhile (its own race: the
    /// copy is whatever the bytes were when read).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        let mut at = 0;
        for v in self.iov {
            // SAFETY: `new`'s contract: `iov_len` mapped bytes at
            // `iov_base`, alive for `'a`; `out` holds `len`, the sum of
            // the lengths, so `at + iov_len` stays inside it. Raw copies
            // make no reference to memory the guest may write.
            unsafe {
                std::ptr::copy_nonoverlapping(v.iov_base.cast::<u8>(), out.as_mut_ptr().add(at), v.iov_len);
            }
            at += v.iov_len;
        }
        out
    }
}

impl std::fmt::Debug for GuestFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestFrame").field("pieces", &self.iov.len()).field("len", &self.len).finish()
    }
}
