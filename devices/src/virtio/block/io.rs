//! Positional scatter-gather I/O between the backing file and guest memory.
//!
//! Data moves straight between the file and the guest's buffers, with no
//! bounce buffer: vm-memory's `GuestMemory::get_slices` hands out
//! [`VolatileSlice`]s (host mappings of the guest buffers, after IOMMU
//! translation when the device sits behind one), and `preadv(2)` /
//! `pwritev(2)` take them as one iovec array, so the kernel copies each byte
//! once, between the page cache and guest pages, and a whole multi-segment
//! request costs one system call. The alternatives are worse on both counts:
//! `FileExt::read_at` into a bounce buffer and then
//! `VolatileSlice::copy_from` copies every byte twice and needs a call per
//! segment, and vm-memory's own `ReadVolatile for File` uses `read(2)` at the
//! shared file cursor (a seek per segment, and not positional).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::volatile_memory::{PtrGuard, PtrGuardMut};
use vm_memory::VolatileSlice;

/// Most iovecs one call accepts (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// File to guest memory.
    FromFile,
    /// Guest memory to file.
    ToFile,
}

/// Keeps a slice's host mapping alive while the kernel uses the pointer:
/// held until the system call returns, never read.
enum Guard {
    Read { _mapping: PtrGuard },
    Write { _mapping: PtrGuardMut },
}

/// Fills `bufs`, in order, from `file` starting at byte `offset`. Reaching
/// the end of the file first is an error (`UnexpectedEof`); what was read
/// before an error may already be in guest memory.
pub(crate) fn read_exact_at<B: BitmapSlice>(
    file: &File,
    offset: u64,
    bufs: &[VolatileSlice<'_, B>],
) -> io::Result<()> {
    transfer(file, offset, bufs, Direction::FromFile)
}

/// Writes `bufs`, in order, to `file` starting at byte `offset`.
pub(crate) fn write_all_at<B: BitmapSlice>(
    file: &File,
    offset: u64,
    bufs: &[VolatileSlice<'_, B>],
) -> io::Result<()> {
    transfer(file, offset, bufs, Direction::ToFile)
}

fn transfer<B: BitmapSlice>(
    file: &File,
    mut offset: u64,
    bufs: &[VolatileSlice<'_, B>],
    dir: Direction,
) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // Progress: bytes `..done` of `bufs[idx]` are transferred, as is every
    // slice before it.
    let mut idx = 0;
    let mut done = 0;
    loop {
        while bufs.get(idx).is_some_and(|s| s.len() == done) {
            idx += 1;
            done = 0;
        }
        if idx >= bufs.len() {
            return Ok(());
        }

        let mut iovs = Vec::with_capacity((bufs.len() - idx).min(IOV_MAX));
        let mut guards = Vec::with_capacity(iovs.capacity());
        let mut skip = done;
        for slice in &bufs[idx..] {
            if iovs.len() == IOV_MAX {
                break;
            }
            let rest = slice.offset(skip).map_err(io::Error::other)?;
            skip = 0;
            if rest.is_empty() {
                continue;
            }
            let (base, guard) = match dir {
                Direction::FromFile => {
                    let g = rest.ptr_guard_mut();
                    (g.as_ptr(), Guard::Write { _mapping: g })
                }
                Direction::ToFile => {
                    let g = rest.ptr_guard();
                    (g.as_ptr().cast_mut(), Guard::Read { _mapping: g })
                }
            };
            iovs.push(libc::iovec { iov_base: base.cast(), iov_len: rest.len() });
            guards.push(guard);
        }

        let pos = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
        // `iovs.len()` is at most IOV_MAX, so it fits.
        let count = libc::c_int::try_from(iovs.len()).map_err(io::Error::other)?;
        let n = match dir {
            // SAFETY: `fd` is open for the duration of the call (borrowed from
            // `file`). Every iovec describes `iov_len` bytes of a live
            // VolatileSlice (a host mapping of guest memory, valid for reads
            // and writes of its whole length); `guards` keeps each mapping in
            // place until after the call. The kernel writes only inside them.
            Direction::FromFile => unsafe { libc::preadv(fd, iovs.as_ptr(), count, pos) },
            // SAFETY: as above; the kernel only reads from the iovecs.
            Direction::ToFile => unsafe { libc::pwritev(fd, iovs.as_ptr(), count, pos) },
        };
        drop(guards);
        if n < 0 {
            let err = io::Error::last_os_error();
            if dir == Direction::FromFile {
                // Part of the batch may have been written before the error.
                mark_dirty(bufs, idx, done, iovs.iter().map(|v| v.iov_len).sum());
            }
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let n = usize::try_from(n).map_err(io::Error::other)?;
        if n == 0 {
            return Err(match dir {
                Direction::FromFile => io::Error::from(io::ErrorKind::UnexpectedEof),
                Direction::ToFile => io::Error::from(io::ErrorKind::WriteZero),
            });
        }
        if dir == Direction::FromFile {
            mark_dirty(bufs, idx, done, n);
        }
        offset = offset
            .checked_add(n as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset overflow"))?;
        // Advance past the `n` bytes transferred.
        let mut left = n;
        while left > 0 {
            let Some(slice) = bufs.get(idx) else { break };
            let step = (slice.len() - done).min(left);
            done += step;
            left -= step;
            if done == slice.len() {
                idx += 1;
                done = 0;
            }
        }
    }
}

/// Records `len` bytes written into guest memory, starting at byte `done`
/// of `bufs[idx]`, in the slices' dirty bitmaps.
fn mark_dirty<B: BitmapSlice>(bufs: &[VolatileSlice<'_, B>], mut idx: usize, mut done: usize, len: usize) {
    let mut left = len;
    while left > 0 {
        let Some(slice) = bufs.get(idx) else { break };
        let step = (slice.len() - done).min(left);
        slice.bitmap().mark_dirty(done, step);
        left -= step;
        idx += 1;
        done = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
    use vmm_sys_util::tempfile::TempFile;

    use super::*;

    fn file_with(content: &[u8]) -> TempFile {
        let f = TempFile::new().unwrap();
        f.as_file().write_all(content).unwrap();
        f
    }

    fn file_content(f: &TempFile) -> Vec<u8> {
        let mut v = Vec::new();
        let mut file = f.as_file();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn reads_and_writes_scattered_slices_at_an_offset() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let f = file_with(&content);
        // Lengths 1, 0, 700, 323 at scattered addresses: 1024 bytes in all.
        let layout = [(0x100u64, 1usize), (0x300, 0), (0x1001, 700), (0x8000, 323)];
        let slices: Vec<_> =
            layout.iter().map(|&(a, l)| mem.get_slice(GuestAddress(a), l).unwrap()).collect();
        read_exact_at(f.as_file(), 1000, &slices).unwrap();
        let mut got = Vec::new();
        for &(a, l) in &layout {
            let mut b = vec![0u8; l];
            mem.read_slice(&mut b, GuestAddress(a)).unwrap();
            got.extend_from_slice(&b);
        }
        assert_eq!(got, &content[1000..2024]);

        write_all_at(f.as_file(), 3000, &slices).unwrap();
        let after = file_content(&f);
        assert_eq!(after.len(), 4096);
        assert_eq!(&after[3000..4024], &content[1000..2024]);
        assert_eq!(&after[..3000], &content[..3000]);
        assert_eq!(&after[4024..], &content[4024..]);
    }

    #[test]
    fn more_slices_than_one_call_takes() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let f = file_with(&content);
        // 3000 one-byte slices, every other byte of guest memory.
        let slices: Vec<_> = (0..3000u64).map(|i| mem.get_slice(GuestAddress(2 * i), 1).unwrap()).collect();
        read_exact_at(f.as_file(), 0, &slices).unwrap();
        for i in 0..3000u64 {
            assert_eq!(mem.read_obj::<u8>(GuestAddress(2 * i)).unwrap(), content[i as usize]);
        }
        write_all_at(f.as_file(), 3000, &slices).unwrap();
        let after = file_content(&f);
        assert_eq!(&after[3000..], &content[..]);
    }

    #[test]
    fn end_of_file_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let f = file_with(&[1u8; 100]);
        let slices = [mem.get_slice(GuestAddress(0), 200).unwrap()];
        let err = read_exact_at(f.as_file(), 0, &slices).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            read_exact_at(f.as_file(), u64::MAX, &slices).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
