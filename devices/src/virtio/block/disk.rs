//! The backing store of a block device: an opened file (or host block
//! device), its size in sectors, whether the guest may write it, and the
//! serial string `VIRTIO_BLK_T_GET_ID` returns.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

use super::io::{read_exact_at, write_all_at};
use super::BlockError;

/// log2 of the virtio-blk sector size.
pub(crate) const SECTOR_SHIFT: u32 = 9;
/// The virtio-blk sector: capacity and request offsets count in it,
/// whatever `blk_size` says (virtio 1.2, 5.2.4).
pub(crate) const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Length of the `VIRTIO_BLK_T_GET_ID` answer.
pub(crate) const ID_BYTES: usize = 20;

pub(crate) struct Disk {
    file: File,
    read_only: bool,
    /// Size in sectors: the file's length rounded down to a whole sector.
    sectors: u64,
    /// The serial, NUL-padded.
    id: [u8; ID_BYTES],
    /// Called after every sync of the backing file, whatever its outcome:
    /// lets tests see when the device syncs relative to what it tells the
    /// driver (a sync itself leaves no trace a test can read).
    #[cfg(test)]
    pub(crate) on_sync: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("read_only", &self.read_only)
            .field("sectors", &self.sectors)
            .field("id", &String::from_utf8_lossy(&self.id).trim_end_matches('\0'))
            .finish_non_exhaustive()
    }
}

impl Disk {
    /// Measures `file` (seeking to its end, which also works for host block
    /// devices, whose metadata length is 0) and checks that `id` fits.
    ///
    /// A file whose length is not a multiple of 512 is rounded down: the
    /// guest sees only whole sectors and the tail is never read or written.
    pub(crate) fn new(file: File, read_only: bool, id: &str) -> Result<Self, BlockError> {
        let bytes = id.as_bytes();
        if bytes.len() > ID_BYTES {
            return Err(BlockError::IdTooLong(bytes.len()));
        }
        let mut padded = [0u8; ID_BYTES];
        padded[..bytes.len()].copy_from_slice(bytes);
        let len = (&file).seek(SeekFrom::End(0)).map_err(BlockError::Size)?;
        if len % SECTOR_SIZE != 0 {
            log::warn!(
                "virtio-blk: backing file is {len} bytes, not a whole number of sectors; \
                 the last {} bytes are not visible to the guest",
                len % SECTOR_SIZE
            );
        }
        Ok(Self {
            file,
            read_only,
            sectors: len >> SECTOR_SHIFT,
            id: padded,
            #[cfg(test)]
            on_sync: None,
        })
    }

    /// Capacity in 512-byte sectors.
    pub(crate) fn sectors(&self) -> u64 {
        self.sectors
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }

    /// The byte offset of a `len`-byte transfer starting at `sector`, if it
    /// lies entirely inside the disk (no overflow anywhere).
    pub(crate) fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        let capacity = self.sectors.checked_mul(SECTOR_SIZE)?;
        (end <= capacity).then_some(start)
    }

    pub(crate) fn read<B: BitmapSlice>(&self, offset: u64, bufs: &[VolatileSlice<'_, B>]) -> io::Result<()> {
        read_exact_at(&self.file, offset, bufs)
    }

    pub(crate) fn write<B: BitmapSlice>(&self, offset: u64, bufs: &[VolatileSlice<'_, B>]) -> io::Result<()> {
        write_all_at(&self.file, offset, bufs)
    }

    /// Makes every completed write durable: returns once the host kernel
    /// has written them, and the metadata needed to read them back, to the
    /// storage under the file and flushed that storage's volatile cache.
    ///
    /// `fdatasync(2)`, not `fsync(2)`: the only metadata a guest write
    /// changes that `fdatasync` leaves unsynced are the file's timestamps,
    /// which the guest never sees. The file's size cannot change (requests
    /// beyond the capacity measured at creation are refused), and the block
    /// allocation a write into a hole of a sparse file (or into a
    /// preallocated, unwritten extent) causes is metadata "needed in order
    /// to allow a subsequent data retrieval", which `fdatasync` does sync.
    /// On a host block device both calls flush the device's write cache.
    pub(crate) fn flush(&self) -> io::Result<()> {
        let result = self.file.sync_data();
        #[cfg(test)]
        if let Some(hook) = &self.on_sync {
            hook();
        }
        result
    }
}
