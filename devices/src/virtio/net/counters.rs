//! What the device counts, for `--stats` and the tests.

/// Frames and bytes (Ethernet frames, without the virtio header) each
/// way, and what went wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames from the backend that the guest's buffers could not take
    /// (unusable chains, too small) or that were malformed.
    pub rx_dropped: u64,
    /// Times the device stopped reading the backend because the guest had
    /// no (or too few) receive buffers posted.
    pub rx_stalls: u64,
    /// Frames the guest sent that the backend took.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the guest sent that were not delivered (unusable chains,
    /// refused by the backend).
    pub tx_dropped: u64,
    /// Notifications of `transmitq1` (each an exit of the guest's vCPU):
    /// `tx_frames` over this is how many frames one notification moved.
    pub tx_notifications: u64,
    /// Failed backend reads and writes.
    pub backend_errors: u64,
}
