//! virtio-rng, the entropy device (virtio 1.2, 5.4): one request queue whose
//! device-writable buffers the device fills with bytes from the host's
//! `getrandom(2)`.
//!
//! Each chain gets at most [`RNG_MAX_BYTES_PER_REQUEST`] bytes (the driver
//! only needs "some" entropy per request, and the cap bounds the work one
//! chain can ask for); its buffers are filled in order and the used length
//! is the number of bytes written. The cap is a page: Linux asks for 32 or
//! 64 bytes at a time (its driver's buffer is a cache line), and a full
//! queue of capped chains costs about a millisecond of `getrandom` on the
//! event loop, where 64 KiB per chain let one notification hold it for
//! tens of milliseconds (16 MiB of random bytes). A chain that is not purely
//! device-writable, is structurally broken (see the block device's table of
//! hostile chains) or names memory that is not writable is completed with
//! used length 0 and nothing written. A `getrandom` failure (impossible on
//! any kernel dmavm runs on, short of `ENOSYS`) is a backend error: the
//! transport sets `DEVICE_NEEDS_RESET`.

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::QueueT;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{GuestMemory, Permissions, VolatileSlice};

use crate::virtio::chain::{slices, walk as walk_chain, Buffer};
use crate::virtio::device::{
    Activation, DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::virtio::queue::{drain as drain_queue, single_queue_notified, ActiveQueue};

/// Size of the request queue the device offers.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// Most bytes the device writes for one chain.
pub const RNG_MAX_BYTES_PER_REQUEST: usize = 4096;

/// A virtio entropy device (device ID 4).
pub struct Rng<M> {
    features: u64,
    queue_sizes: [u16; 1],
    active: Option<ActiveQueue<M>>,
}

impl<M> std::fmt::Debug for Rng<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng")
            .field("features", &format_args!("{:#x}", self.features))
            .field("active", &self.active.is_some())
            .finish()
    }
}

impl<M> Rng<M> {
    /// An entropy device, not yet activated. Its features are
    /// `VIRTIO_F_VERSION_1`, `VIRTIO_RING_F_INDIRECT_DESC` and
    /// `VIRTIO_RING_F_EVENT_IDX`; `VIRTIO_F_ACCESS_PLATFORM` is the
    /// transport's to offer.
    pub fn new() -> Self {
        let features = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX;
        Self { features, queue_sizes: [RNG_QUEUE_SIZE], active: None }
    }
}

impl<M> Default for Rng<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioDevice<M> for Rng<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    /// The entropy device has no configuration space.
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError> {
        self.active = Some(ActiveQueue::single(activation)?);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let Some(active) = single_queue_notified(self.active.as_mut(), "virtio-rng", index) else {
            return Ok(());
        };
        let mem = &*active.mem;
        let max_descriptors = active.queue.size();
        drain_queue(&mut active.queue, mem, &*active.interrupt, 0, |chain| {
            match walk_chain(chain, max_descriptors) {
                Ok(buffers) => fill(mem, &buffers),
                Err(e) => {
                    log::debug!("virtio-rng: {e}; chain returned unused");
                    Ok(0)
                }
            }
        })
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

/// Fills the chain's buffers with random bytes and returns how many were
/// written.
fn fill<M: GuestMemory>(mem: &M, buffers: &[Buffer]) -> Result<u32, DeviceError> {
    if buffers.iter().any(|b| !b.write_only) {
        log::debug!("virtio-rng: chain has device-readable buffers; returned unused");
        return Ok(0);
    }
    let slices = match slices(mem, buffers, RNG_MAX_BYTES_PER_REQUEST, Permissions::Write) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("virtio-rng: buffer not writable: {e}; chain returned unused");
            return Ok(0);
        }
    };
    let mut written = 0usize;
    for s in &slices {
        getrandom_into(s)?;
        written += s.len();
    }
    // At most RNG_MAX_BYTES_PER_REQUEST.
    Ok(written as u32)
}

/// Fills `slice` from `getrandom(2)`, straight into guest memory.
fn getrandom_into<B: BitmapSlice>(slice: &VolatileSlice<'_, B>) -> Result<(), DeviceError> {
    let guard = slice.ptr_guard_mut();
    let mut done = 0;
    while done < slice.len() {
        // SAFETY: the pointer and length describe the not yet filled part
        // of `slice`, a live host mapping of guest memory valid for writes
        // (kept in place by `guard`); getrandom writes at most that many
        // bytes.
        let n = unsafe { libc::getrandom(guard.as_ptr().wrapping_add(done).cast(), slice.len() - done, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            slice.bitmap().mark_dirty(0, done);
            return Err(DeviceError::Backend(err));
        }
        done += n.unsigned_abs();
    }
    slice.bitmap().mark_dirty(0, done);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::test_utils::guest_memory::{memory, MemCheck, WriteProtected, MEM_SIZE};
    use crate::test_utils::interrupts::Interrupts;
    use crate::test_utils::split_queue::{self, Driver};

    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn setup() -> (Arc<GuestMemoryMmap>, Rng<GuestMemoryMmap>, Arc<Interrupts>) {
        (memory(), Rng::new(), Arc::new(Interrupts::default()))
    }

    /// Started by a driver that negotiated `VIRTIO_RING_F_EVENT_IDX`.
    fn activate(
        rng: &mut Rng<GuestMemoryMmap>,
        mem: &Arc<GuestMemoryMmap>,
        d: &Driver,
        irq: &Arc<Interrupts>,
    ) {
        split_queue::activate(rng, mem.clone(), &[d], VIRTIO_RING_F_EVENT_IDX, irq);
    }

    #[test]
    fn features_and_identity() {
        let r = Rng::<GuestMemoryMmap>::new();
        assert_eq!(VirtioDevice::<GuestMemoryMmap>::device_type(&r), 4);
        let f = VirtioDevice::<GuestMemoryMmap>::device_features(&r);
        assert_eq!(f, VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX);
        assert_eq!(VirtioDevice::<GuestMemoryMmap>::queue_max_sizes(&r), &[256]);
        let mut c = [0xffu8; 4];
        VirtioDevice::<GuestMemoryMmap>::read_config(&r, 0, &mut c);
        assert_eq!(c, [0; 4]);
    }

    #[test]
    fn fills_buffers_and_honours_lengths() {
        let (mem, mut rng, irq) = setup();
        let mut d = Driver::new(&mem, 16);
        let head = d.chain(&[(0x10000, 100, W), (0x20000, 3000, W), (0x30000, 1, W)]);
        d.publish(head);
        let check = MemCheck::new(&mem);
        activate(&mut rng, &mem, &d, &irq);
        rng.process_queue(0).unwrap();
        assert_eq!(d.used(0), (u32::from(head), 3101));
        check.assert_only_changed(&mem, &[d.used_ring(), (0x10000, 100), (0x20000, 3000), (0x30000, 1)]);
        // 3000 random bytes are not all the canary.
        let mut buf = vec![0u8; 3000];
        mem.read_slice(&mut buf, GuestAddress(0x20000)).unwrap();
        assert!(check.differs(0x20000, &buf) > 2900);
        assert_eq!(irq.count(), 1);
    }

    #[test]
    fn caps_each_request() {
        let (mem, mut rng, irq) = setup();
        let mut d = Driver::new(&mem, 16);
        // The cap falls inside the second buffer.
        let first = RNG_MAX_BYTES_PER_REQUEST / 2;
        let head = d.chain(&[(0x10000, first as u32, W), (0x20000, 0x10000, W)]);
        d.publish(head);
        let check = MemCheck::new(&mem);
        activate(&mut rng, &mem, &d, &irq);
        rng.process_queue(0).unwrap();
        assert_eq!(d.used(0).1 as usize, RNG_MAX_BYTES_PER_REQUEST);
        let rest = RNG_MAX_BYTES_PER_REQUEST - first;
        check.assert_only_changed(&mem, &[d.used_ring(), (0x10000, first), (0x20000, rest)]);
    }

    #[test]
    fn device_readable_buffers_complete_with_nothing() {
        let (mem, mut rng, irq) = setup();
        let mut d = Driver::new(&mem, 16);
        let h1 = d.chain(&[(0x10000, 100, 0)]);
        let h2 = d.chain(&[(0x10000, 100, W), (0x20000, 100, 0)]);
        d.publish(h1);
        d.publish(h2);
        let check = MemCheck::new(&mem);
        activate(&mut rng, &mem, &d, &irq);
        rng.process_queue(0).unwrap();
        assert_eq!(d.used(0), (u32::from(h1), 0));
        assert_eq!(d.used(1), (u32::from(h2), 0));
        check.assert_only_changed(&mem, &[d.used_ring()]);
    }

    #[test]
    fn hostile_chains_complete_with_nothing() {
        let (mem, mut rng, irq) = setup();
        let mut d = Driver::new(&mem, 16);
        // A loop: 0 -> 1 -> 0.
        d.desc(0, 0x10000, 64, W | VRING_DESC_F_NEXT as u16, 1);
        d.desc(1, 0x11000, 64, W | VRING_DESC_F_NEXT as u16, 0);
        d.publish(0);
        // Outside guest memory, and a length that runs off its end.
        d.desc(2, MEM_SIZE as u64 + 0x1000, 64, W, 0);
        d.publish(2);
        d.desc(3, MEM_SIZE as u64 - 16, 64, W, 0);
        d.publish(3);
        d.desc(4, u64::MAX - 8, 64, W, 0);
        d.publish(4);
        // An indirect table inside an indirect table.
        d.indirect_table(0x40000, &[(0x41000, 0x20, VRING_DESC_F_INDIRECT as u16)]);
        d.desc(5, 0x40000, 16, VRING_DESC_F_INDIRECT as u16, 0);
        d.publish(5);
        // An indirect table longer than the queue.
        let long: Vec<_> = (0..17u64).map(|i| (0x50000 + i * 0x100, 0x10u32, W)).collect();
        d.indirect_table(0x42000, &long);
        d.desc(6, 0x42000, 17 * 16, VRING_DESC_F_INDIRECT as u16, 0);
        d.publish(6);
        let check = MemCheck::new(&mem);
        activate(&mut rng, &mem, &d, &irq);
        rng.process_queue(0).unwrap();
        for (i, head) in [0u16, 2, 3, 4, 5, 6].into_iter().enumerate() {
            assert_eq!(d.used(i as u16), (u32::from(head), 0), "chain {head}");
        }
        check.assert_only_changed(&mem, &[d.used_ring()]);
    }

    #[test]
    fn indirect_chain_is_filled() {
        let (mem, mut rng, irq) = setup();
        let mut d = Driver::new(&mem, 16);
        d.indirect_table(0x40000, &[(0x10000, 10, W), (0x11000, 20, W)]);
        d.desc(0, 0x40000, 32, VRING_DESC_F_INDIRECT as u16, 0);
        d.publish(0);
        let check = MemCheck::new(&mem);
        activate(&mut rng, &mem, &d, &irq);
        rng.process_queue(0).unwrap();
        assert_eq!(d.used(0), (0, 30));
        check.assert_only_changed(&mem, &[d.used_ring(), (0x10000, 10), (0x11000, 20)]);
    }

    #[test]
    fn buffer_the_device_may_not_write_completes_with_nothing() {
        let mem = memory();
        let protected = Arc::new(WriteProtected { inner: mem.clone(), window: (0x20000, 0x21000) });
        let mut rng = Rng::<WriteProtected>::new();
        let irq = Arc::new(Interrupts::default());
        let mut d = Driver::new(&mem, 16);
        // The first buffer is writable, the second is not: nothing is written.
        let h1 = d.chain(&[(0x10000, 64, W), (0x20800, 64, W)]);
        let h2 = d.chain(&[(0x10000, 64, W)]);
        d.publish(h1);
        d.publish(h2);
        let check = MemCheck::new(&mem);
        rng.activate(Activation {
            mem: protected,
            queues: vec![d.queue()],
            acked_features: VIRTIO_F_VERSION_1,
            interrupt: irq.clone(),
        })
        .unwrap();
        rng.process_queue(0).unwrap();
        assert_eq!(d.used(0), (u32::from(h1), 0));
        assert_eq!(d.used(1), (u32::from(h2), 64));
        check.assert_only_changed(&mem, &[d.used_ring(), (0x10000, 64)]);
    }
}
