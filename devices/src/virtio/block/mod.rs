//! virtio-blk (virtio 1.2, 5.2): a disk backed by a host file, one request
//! queue, generic over the guest memory it reaches the rings and buffers
//! through (direct, or translated by the virtual IOMMU).
//!
//! # Features
//!
//! `VIRTIO_F_VERSION_1`, `VIRTIO_BLK_F_FLUSH`, `VIRTIO_BLK_F_SEG_MAX`
//! (`seg_max` = queue size − 2: header and status take the other two
//! descriptors), `VIRTIO_BLK_F_BLK_SIZE` (512), `VIRTIO_BLK_F_RO` for a
//! read-only disk, `VIRTIO_RING_F_INDIRECT_DESC` and `VIRTIO_RING_F_EVENT_IDX`.
//! `VIRTIO_F_ACCESS_PLATFORM` is the transport's to offer, from its
//! [`DmaAccess`](crate::virtio::DmaAccess).
//!
//! # Requests
//!
//! `IN`, `OUT`, `FLUSH` (`fdatasync`) and `GET_ID` are served; any other type
//! gets `VIRTIO_BLK_S_UNSUPP`. The used length is the number of bytes
//! written to the driver: data bytes (for `IN` and `GET_ID`, on success) plus
//! the status byte.
//!
//! # Durability
//!
//! Requests are served one at a time, each completed (status byte written,
//! chain put in the used ring) only after its system calls have returned.
//!
//! - A completed `OUT` has been written into the backing file with
//!   `pwritev(2)` (no `O_DIRECT`, no `O_SYNC`): it is in the host kernel's
//!   page cache. It survives dmavm exiting, crashing or being killed with
//!   `SIGKILL` (the kernel, not dmavm, owns those pages and writes them back
//!   later), and every later read, by the guest or anyone on the host, sees
//!   it. It does not yet survive a host crash or power loss.
//! - A completed `FLUSH` (`fdatasync(2)` of the file, see `Disk::flush` for
//!   why not `fsync`) makes every `OUT` completed before it durable: it
//!   survives a host crash too, as far as the host's storage honours cache
//!   flushes. If the sync fails the `FLUSH` completes with `IOERR`, since
//!   the writes it covered may be lost.
//!
//! This is the write-back cache of virtio 1.3, 5.2.6 (device requirements):
//! with `VIRTIO_BLK_F_FLUSH` negotiated a completed write is volatile until
//! a `FLUSH` submitted after it completes. Linux negotiates it and then
//! shows the disk's `queue/write_cache` as "write back", so its `fsync`,
//! `sync` and journal commits send `FLUSH`. If a driver leaves
//! `VIRTIO_BLK_F_FLUSH` out, the same section makes every write stable at
//! completion, so each `OUT` is synced before it completes (write-through).
//! `VIRTIO_BLK_F_CONFIG_WCE` (a driver-switchable `writeback` field) is not
//! offered: the two fixed modes cover both kinds of driver.
//!
//! # Hostile chains
//!
//! Nothing a driver puts in the ring can make the device panic or write
//! outside the buffers of the chain being served. Per case:
//!
//! | driver input | outcome |
//! |---|---|
//! | descriptor loop, `next` outside the table, chain longer than both the queue size and `seg_max` + 2 (indirect tables included, see [`max_chain`]), indirect table inside an indirect table, malformed indirect table (length not a multiple of 16, zero entries), descriptor table not readable, buffers adding up to more than 2^32 bytes | chain structure unusable, no status byte can be trusted: used length 0, nothing written |
//! | last descriptor not device-writable, empty, or its last byte not writable in guest memory | no status byte: used length 0, nothing executed or written |
//! | request header shorter than 16 bytes | `IOERR` |
//! | data buffer (or header) outside guest memory, or not accessible with the needed permission through the IOMMU | `IOERR`, no data moved |
//! | data in device-readable buffers for `IN` / `GET_ID`, or in device-writable buffers for `OUT`; a device-readable descriptor after a device-writable one | `IOERR` |
//! | data length not a multiple of 512, sector range beyond the capacity, `sector * 512 + len` overflowing | `IOERR` |
//! | write to a read-only disk | `IOERR`, file untouched |
//! | head index outside the queue, available index more than a queue size ahead, rings not accessible | [`DeviceError::Queue`]: the transport sets `DEVICE_NEEDS_RESET` |
//!
//! # Capacity
//!
//! The capacity is the backing file's length in 512-byte sectors, rounded
//! down: a trailing partial sector is invisible to the guest (a warning is
//! logged when the device is created).

mod config;
mod disk;
mod io;
mod request;

#[cfg(test)]
mod tests;

use std::fs::File;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::QueueT;
use vm_memory::GuestMemory;

use crate::virtio::chain::walk as walk_chain;
use crate::virtio::device::{
    Activation, DeviceError, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::virtio::queue::{drain as drain_queue, single_queue_notified, ActiveQueue};
use config::ConfigSpace;
use disk::{Disk, SECTOR_SIZE};
use request::WriteCache;

/// Size of the request queue the device offers.
pub const BLOCK_QUEUE_SIZE: u16 = 256;
/// Longest `GET_ID` serial, in bytes.
pub const BLOCK_ID_BYTES: usize = disk::ID_BYTES;

/// How to build a [`Block`] device.
#[derive(Debug)]
pub struct BlockConfig {
    /// The backing file (or host block device), already opened: read-write,
    /// or read-only when `read_only` is set.
    pub file: File,
    /// Offer `VIRTIO_BLK_F_RO` and refuse every write.
    pub read_only: bool,
    /// Serial returned by `VIRTIO_BLK_T_GET_ID`: at most 20 bytes, NUL-padded.
    pub id: String,
}

/// Why a [`Block`] device cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The serial does not fit `GET_ID`'s 20 bytes.
    #[error("block device id is {0} bytes long; at most {BLOCK_ID_BYTES} fit")]
    IdTooLong(usize),
    /// The size of the backing file could not be determined.
    #[error("cannot determine the size of the backing file")]
    Size(#[source] std::io::Error),
}

/// Most descriptors a chain of a queue of `queue_size` may have: the queue
/// size (virtio 1.2 and 1.3, 2.7.5.3.1: "A driver MUST NOT create a
/// descriptor chain longer than the Queue Size of the device", indirect
/// tables included), or `seg_max` + 2 if that is more. `seg_max` is read
/// before the driver chooses its queue size and promises requests of that
/// many segments whatever size it chooses; Linux's virtio-blk builds
/// indirect tables of up to `seg_max` + 2 descriptors on a smaller queue
/// (it shrinks the ring when it cannot allocate the largest), so refusing
/// them would break a promise the device made. Direct chains cannot pass
/// the queue size anyway: virtio-queue stops walking them there.
fn max_chain(queue_size: u16) -> u16 {
    queue_size.max(SEG_MAX as u16 + 2)
}

/// `seg_max` (5.2.4): header and status take the two other descriptors of
/// a chain as long as the largest queue.
const SEG_MAX: u32 = BLOCK_QUEUE_SIZE as u32 - 2;

/// A virtio-blk device (device ID 2).
pub struct Block<M> {
    disk: Disk,
    features: u64,
    config: ConfigSpace,
    queue_sizes: [u16; 1],
    /// Set from the negotiated features at each activation.
    cache: WriteCache,
    active: Option<ActiveQueue<M>>,
}

impl<M> std::fmt::Debug for Block<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("disk", &self.disk)
            .field("features", &format_args!("{:#x}", self.features))
            .field("cache", &self.cache)
            .field("active", &self.active.is_some())
            .finish()
    }
}

impl<M> Block<M> {
    /// Creates the device; the backing file is measured now (see the module
    /// documentation on capacity).
    pub fn new(config: BlockConfig) -> Result<Self, BlockError> {
        let disk = Disk::new(config.file, config.read_only, &config.id)?;
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if config.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        let config = ConfigSpace::new(disk.sectors(), SEG_MAX, SECTOR_SIZE as u32);
        Ok(Self {
            disk,
            features,
            config,
            queue_sizes: [BLOCK_QUEUE_SIZE],
            cache: WriteCache::WriteThrough,
            active: None,
        })
    }

    /// Capacity in 512-byte sectors, as the configuration space reports it.
    pub fn capacity(&self) -> u64 {
        self.disk.sectors()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioDevice<M> for Block<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError> {
        self.cache = if activation.acked_features & 1 << VIRTIO_BLK_F_FLUSH != 0 {
            WriteCache::WriteBack
        } else {
            WriteCache::WriteThrough
        };
        self.active = Some(ActiveQueue::single(activation)?);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let Some(active) = single_queue_notified(self.active.as_mut(), "virtio-blk", index) else {
            return Ok(());
        };
        let disk = &self.disk;
        let cache = self.cache;
        let mem = &*active.mem;
        let max_descriptors = max_chain(active.queue.size());
        drain_queue(&mut active.queue, mem, &*active.interrupt, 0, |chain| {
            Ok(match walk_chain(chain, max_descriptors) {
                // The chain goes to the used ring only when `handle`
                // returns, so a FLUSH is completed after its sync.
                Ok(buffers) => request::handle(mem, disk, cache, &buffers),
                Err(e) => {
                    log::debug!("virtio-blk: {e}; chain returned unused");
                    0
                }
            })
        })
    }

    fn reset(&mut self) {
        self.active = None;
    }
}
