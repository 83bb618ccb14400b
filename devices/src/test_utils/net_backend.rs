//! An in-memory virtio-net backend: frames waiting for the device, frames
//! it wrote, the offloads it set, and read or write failures on demand,
//! all in a [`Wire`] the test (or fuzz target) shares with the backend.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::net::{GuestFrame, NetBackend, Offloads};

/// What the backend saw and holds, shared with the test.
#[derive(Debug, Default)]
pub struct Wire {
    /// Frames waiting for the device to read.
    pub inbox: VecDeque<Vec<u8>>,
    /// Frames the device wrote.
    pub outbox: Vec<Vec<u8>>,
    /// Every offload setting the device made, in order.
    pub offloads: Vec<Offloads>,
    /// Reads the device tried, failed ones included.
    pub reads: usize,
    /// Frames the device read.
    pub given: u64,
    /// Reads fail (`EBADFD`, as a TAP whose interface is gone).
    pub fail_reads: bool,
    /// Writes fail (`EIO`).
    pub fail_writes: bool,
}

/// A backend over a [`Wire`]; its readiness descriptor is an eventfd
/// that is never signalled.
#[derive(Debug)]
pub struct MemBackend {
    wire: Arc<Mutex<Wire>>,
    ready: EventFd,
}

impl MemBackend {
    /// A backend over a new, empty wire, and that wire.
    pub fn new() -> (Self, Arc<Mutex<Wire>>) {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let ready = EventFd::new(EFD_NONBLOCK).unwrap();
        (Self { wire: wire.clone(), ready }, wire)
    }
}

impl NetBackend for MemBackend {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut w = self.wire.lock().unwrap();
        w.reads += 1;
        if w.fail_reads {
            return Err(std::io::Error::from_raw_os_error(libc::EBADFD));
        }
        let Some(f) = w.inbox.pop_front() else {
            return Err(std::io::ErrorKind::WouldBlock.into());
        };
        w.given += 1;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }

    fn write_frame(&mut self, frame: &GuestFrame<'_>) -> std::io::Result<()> {
        let mut w = self.wire.lock().unwrap();
        if w.fail_writes {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        w.outbox.push(frame.to_vec());
        Ok(())
    }

    fn set_offloads(&mut self, offloads: Offloads) -> std::io::Result<()> {
        self.wire.lock().unwrap().offloads.push(offloads);
        Ok(())
    }

    fn readiness_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
}
