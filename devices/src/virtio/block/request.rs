//! One virtio-blk request (virtio 1.2, 5.2.6), from the buffers of a
//! structurally valid chain to a status byte.
//!
//! The device makes no assumption about framing (2.6.4): the device-readable
//! buffers form one byte stream (16-byte header, then data for `OUT`), the
//! device-writable buffers another (data for `IN` / `GET_ID`, then the
//! status byte, which is the last byte of the chain's last descriptor). A
//! header split across descriptors, or data and status sharing a
//! descriptor, are therefore fine.
//!
//! Every check happens before anything is written: the whole data area is
//! translated into host slices (with the access the request needs) before
//! the first byte moves, so a request that fails leaves the guest's buffers
//! untouched apart from the status byte.

use vm_memory::bitmap::BS;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions, VolatileSlice};

use super::disk::{Disk, ID_BYTES, SECTOR_SIZE};
use crate::virtio::chain::Buffer;

/// `struct virtio_blk_req`'s header: `type`, `reserved`, `sector`.
pub(crate) const HEADER_LEN: usize = 16;

/// `VIRTIO_BLK_T_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Other(u32),
}

impl From<u32> for RequestType {
    fn from(v: u32) -> Self {
        use virtio_bindings::virtio_blk::*;
        match v {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            other => Self::Other(other),
        }
    }
}

/// `VIRTIO_BLK_S_*` other than `OK`: why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    IoErr,
    Unsupp,
}

impl Failure {
    fn status(self) -> u8 {
        use virtio_bindings::virtio_blk::*;
        match self {
            Self::IoErr => VIRTIO_BLK_S_IOERR as u8,
            Self::Unsupp => VIRTIO_BLK_S_UNSUPP as u8,
        }
    }
}

/// Whether a completed `OUT` must already be durable: which of the
/// "stable write" cases of virtio 1.3, 5.2.6 (device requirements) the
/// negotiated features select. The device offers `VIRTIO_BLK_F_FLUSH` and
/// not `VIRTIO_BLK_F_CONFIG_WCE`, so the driver cannot switch modes at run
/// time: the features fix the mode for the whole activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteCache {
    /// `VIRTIO_BLK_F_FLUSH` negotiated: a completed write may stay volatile
    /// (in the host page cache) until a `FLUSH` submitted after it
    /// completes, and that `FLUSH` completes only once the write is durable.
    WriteBack,
    /// `VIRTIO_BLK_F_FLUSH` offered but not negotiated: the driver has no
    /// way to ask for durability, so the specification makes every write
    /// stable at its completion, and each `OUT` is synced before it
    /// completes.
    WriteThrough,
}

/// A contiguous run of a request's byte stream in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    addr: GuestAddress,
    len: usize,
}

fn pieces(buffers: &[Buffer]) -> Vec<Piece> {
    buffers.iter().filter(|b| b.len > 0).map(|b| Piece { addr: b.addr, len: b.len as usize }).collect()
}

fn total(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| p.len as u64).sum()
}

/// Splits a byte stream after `at` bytes; `None` if it is shorter (or an
/// address would overflow, which no valid buffer does).
fn split_at(pieces: &[Piece], at: usize) -> Option<(Vec<Piece>, Vec<Piece>)> {
    let mut front = Vec::new();
    let mut back = Vec::new();
    let mut left = at;
    for p in pieces {
        if left >= p.len {
            front.push(*p);
            left -= p.len;
        } else if left > 0 {
            front.push(Piece { addr: p.addr, len: left });
            back.push(Piece {
                addr: p.addr.0.checked_add(left as u64).map(GuestAddress)?,
                len: p.len - left,
            });
            left = 0;
        } else {
            back.push(*p);
        }
    }
    (left == 0).then_some((front, back))
}

/// Translates every piece into host slices with `access`; all or nothing.
fn resolve<'m, M: GuestMemory>(
    mem: &'m M,
    pieces: &[Piece],
    access: Permissions,
) -> Result<Vec<VolatileSlice<'m, BS<'m, M::Bitmap>>>, GuestMemoryError> {
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        for slice in mem.get_slices(p.addr, p.len, access)? {
            out.push(slice?);
        }
    }
    Ok(out)
}

/// Where the status byte goes: the last byte of the last descriptor, which
/// must be device-writable, at least one byte long and writable in guest
/// memory (through the IOMMU, if any).
fn status_address<M: GuestMemory>(mem: &M, buffers: &[Buffer]) -> Option<GuestAddress> {
    let last = buffers.last()?;
    if !last.write_only || last.len == 0 {
        return None;
    }
    let addr = last.addr.0.checked_add(u64::from(last.len) - 1).map(GuestAddress)?;
    mem.check_range(addr, 1, Permissions::Write).then_some(addr)
}

/// Handles the request in `buffers` and returns its used length: the bytes
/// written to the driver, status byte included.
///
/// A chain without a usable status byte (see [`status_address`]) is not
/// executed at all and gets used length 0: the driver cannot learn the
/// outcome, so nothing may happen.
pub(crate) fn handle<M: GuestMemory>(mem: &M, disk: &Disk, cache: WriteCache, buffers: &[Buffer]) -> u32 {
    let Some(status_addr) = status_address(mem, buffers) else {
        log::debug!("virtio-blk: request without a writable status byte, dropped");
        return 0;
    };
    let (status, written) = match execute(mem, disk, cache, buffers) {
        Ok(written) => (virtio_bindings::virtio_blk::VIRTIO_BLK_S_OK as u8, written),
        Err(f) => (f.status(), 0),
    };
    if let Err(e) = mem.write_obj(status, status_addr) {
        // Only possible if the mapping changed under us (IOMMU unmap).
        log::debug!("virtio-blk: status byte no longer writable: {e}");
        return 0;
    }
    written.saturating_add(1)
}

/// Runs the request; `Ok` carries the number of data bytes written to the
/// driver.
fn execute<M: GuestMemory>(
    mem: &M,
    disk: &Disk,
    cache: WriteCache,
    buffers: &[Buffer],
) -> Result<u32, Failure> {
    // Device-readable descriptors come before device-writable ones (2.7.4.2).
    let first_writable = buffers.iter().position(|b| b.write_only).unwrap_or(buffers.len());
    let (readable, writable) = buffers.split_at(first_writable);
    if writable.iter().any(|b| !b.write_only) {
        log::debug!("virtio-blk: device-readable descriptor after a device-writable one");
        return Err(Failure::IoErr);
    }
    let readable = pieces(readable);
    let mut writable = pieces(writable);
    // Drop the status byte (`status_address` made sure it exists).
    if let Some(last) = writable.last_mut() {
        last.len -= 1;
        if last.len == 0 {
            writable.pop();
        }
    }

    let Some((header_pieces, data_out)) = split_at(&readable, HEADER_LEN) else {
        log::debug!("virtio-blk: request header shorter than {HEADER_LEN} bytes");
        return Err(Failure::IoErr);
    };
    let mut header = [0u8; HEADER_LEN];
    let mut at = 0;
    for p in &header_pieces {
        mem.read_slice(&mut header[at..at + p.len], p.addr).map_err(|e| {
            log::debug!("virtio-blk: cannot read the request header: {e}");
            Failure::IoErr
        })?;
        at += p.len;
    }
    let (kind, _reserved, sector) = decode_header(&header);

    match RequestType::from(kind) {
        RequestType::In => {
            if !data_out.is_empty() {
                log::debug!("virtio-blk: IN request with device-readable data buffers");
                return Err(Failure::IoErr);
            }
            let offset = data_range(disk, sector, total(&writable))?;
            let slices = resolve(mem, &writable, Permissions::Write).map_err(bad_buffer)?;
            disk.read(offset, &slices).map_err(io_failed)?;
            u32::try_from(total(&writable)).map_err(|_| Failure::IoErr)
        }
        RequestType::Out => {
            if !writable.is_empty() {
                log::debug!("virtio-blk: OUT request with device-writable data buffers");
                return Err(Failure::IoErr);
            }
            if disk.read_only() {
                return Err(Failure::IoErr);
            }
            let offset = data_range(disk, sector, total(&data_out))?;
            let slices = resolve(mem, &data_out, Permissions::Read).map_err(bad_buffer)?;
            disk.write(offset, &slices).map_err(io_failed)?;
            if cache == WriteCache::WriteThrough {
                disk.flush().map_err(io_failed)?;
            }
            Ok(0)
        }
        RequestType::Flush => {
            // Every write completed before this request is in the file
            // (`pwritev` returned for it), so syncing the file makes all of
            // them durable; the status is written, and the chain returned,
            // only after the sync returns. A failed sync may have lost any
            // of them, which only IOERR can tell the driver.
            disk.flush().map_err(io_failed)?;
            Ok(0)
        }
        RequestType::GetId => {
            if !data_out.is_empty() {
                log::debug!("virtio-blk: GET_ID request with device-readable data buffers");
                return Err(Failure::IoErr);
            }
            // As many bytes of the NUL-padded 20-byte serial as fit.
            let n = usize::try_from(total(&writable)).unwrap_or(usize::MAX).min(ID_BYTES);
            let (target, _) = split_at(&writable, n).ok_or(Failure::IoErr)?;
            let slices = resolve(mem, &target, Permissions::Write).map_err(bad_buffer)?;
            let mut at = 0;
            for s in &slices {
                s.write_slice(&disk.id()[at..at + s.len()], 0).map_err(|_| Failure::IoErr)?;
                at += s.len();
            }
            Ok(n as u32)
        }
        RequestType::Other(t) => {
            log::debug!("virtio-blk: unsupported request type {t}");
            Err(Failure::Unsupp)
        }
    }
}

fn decode_header(h: &[u8; HEADER_LEN]) -> (u32, u32, u64) {
    let mut kind = [0u8; 4];
    let mut reserved = [0u8; 4];
    let mut sector = [0u8; 8];
    kind.copy_from_slice(&h[0..4]);
    reserved.copy_from_slice(&h[4..8]);
    sector.copy_from_slice(&h[8..16]);
    (u32::from_le_bytes(kind), u32::from_le_bytes(reserved), u64::from_le_bytes(sector))
}

/// The byte offset of a data transfer of `len` bytes at `sector`: a whole
/// number of sectors, entirely inside the disk.
fn data_range(disk: &Disk, sector: u64, len: u64) -> Result<u64, Failure> {
    if len % SECTOR_SIZE != 0 {
        log::debug!("virtio-blk: data length {len} is not a multiple of {SECTOR_SIZE}");
        return Err(Failure::IoErr);
    }
    disk.byte_range(sector, len).ok_or_else(|| {
        log::debug!("virtio-blk: sector {sector} + {len} bytes is outside the disk");
        Failure::IoErr
    })
}

fn bad_buffer(e: GuestMemoryError) -> Failure {
    log::debug!("virtio-blk: data buffer not accessible: {e}");
    Failure::IoErr
}

fn io_failed(e: std::io::Error) -> Failure {
    crate::guest_log!(static log::Level::Warn, "virtio-blk: backend I/O failed: {e}");
    Failure::IoErr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(addr: u64, len: usize) -> Piece {
        Piece { addr: GuestAddress(addr), len }
    }

    #[test]
    fn split_inside_and_between_pieces() {
        let s = [p(0x100, 10), p(0x200, 6), p(0x300, 4)];
        assert_eq!(split_at(&s, 16).unwrap(), (vec![p(0x100, 10), p(0x200, 6)], vec![p(0x300, 4)]));
        assert_eq!(
            split_at(&s, 12).unwrap(),
            (vec![p(0x100, 10), p(0x200, 2)], vec![p(0x202, 4), p(0x300, 4)])
        );
        assert_eq!(split_at(&s, 0).unwrap(), (vec![], s.to_vec()));
        assert_eq!(split_at(&s, 20).unwrap(), (s.to_vec(), vec![]));
        assert!(split_at(&s, 21).is_none());
        assert!(split_at(&[p(u64::MAX, 4)], 2).is_none());
    }

    #[test]
    fn request_types() {
        assert_eq!(RequestType::from(0), RequestType::In);
        assert_eq!(RequestType::from(1), RequestType::Out);
        assert_eq!(RequestType::from(4), RequestType::Flush);
        assert_eq!(RequestType::from(8), RequestType::GetId);
        assert_eq!(RequestType::from(11), RequestType::Other(11));
    }
}
