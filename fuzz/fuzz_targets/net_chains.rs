//! virtio-net under a hostile driver: arbitrary receive and transmit
//! rings (split and indirect chains, any header, any length), arbitrary
//! features (mergeable receive buffers, offloads, EVENT_IDX), frames of
//! any size arriving from an in-memory backend that can also fail reads
//! and writes, resets and re-activation, the ends of transmit holds,
//! interleaved.
//!
//! Oracle: no panic; after every receive or transmit run, no guest byte
//! outside both queues' used rings and device-writable descriptors
//! changed; every frame handed to the backend holds a header and at most
//! `FRAME_MAX` bytes; the device counts exactly the frames the backend
//! took as sent, and no more frames received than the backend gave.

#![no_main]

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use dmavm_devices::virtio::net::{GuestFrame, Net, NetBackend, Offloads, FRAME_MAX, VNET_HDR_LEN};
use dmavm_devices::virtio::VirtioDevice;
use dmavm_fuzz::{ChainProgram, QueueRig, RingOp};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Frames the backend holds for the device at most: the device must cope
/// with a backend that always has more, not with an unbounded harness.
const INBOX_MAX: usize = 64;

#[derive(Default)]
struct Wire {
    inbox: VecDeque<Vec<u8>>,
    sent: u64,
    given: u64,
    fail_reads: bool,
    fail_writes: bool,
}

struct Backend {
    wire: Arc<Mutex<Wire>>,
    ready: EventFd,
}

impl NetBackend for Backend {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut w = self.wire.lock().unwrap();
        if w.fail_reads {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        let Some(f) = w.inbox.pop_front() else { return Err(std::io::ErrorKind::WouldBlock.into()) };
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
        let bytes = frame.to_vec();
        assert!(bytes.len() >= VNET_HDR_LEN, "a {}-byte frame has no header", bytes.len());
        assert!(bytes.len() <= FRAME_MAX, "a {}-byte frame is larger than FRAME_MAX", bytes.len());
        w.sent += 1;
        Ok(())
    }

    fn set_offloads(&mut self, _offloads: Offloads) -> std::io::Result<()> {
        Ok(())
    }

    fn readiness_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Ring(RingOp),
    /// A frame of `len` bytes (a header's worth of `header`, then
    /// `byte`) waiting in the backend.
    Frame {
        len: u16,
        header: [u8; 12],
        byte: u8,
    },
    Fail {
        reads: bool,
        writes: bool,
    },
    /// The event loop's receive run (backend readable or ready event).
    Receive,
    /// The driver's notification of the receive queue.
    NotifyRx,
    /// The driver's notification of the transmit queue.
    Transmit,
    /// A reset, then activation with the same rings.
    Reset {
        features: u64,
    },
    /// The event loop's end of a transmit hold (its timer fired; here at
    /// any moment, as a stale expiry may come).
    HoldEnded,
}

fuzz_target!(|input: ChainProgram<Op>| dmavm_fuzz::within_cpu_budget(|| {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let backend = Backend { wire: wire.clone(), ready: EventFd::new(libc::EFD_NONBLOCK).unwrap() };
    let mut net = Net::<GuestMemoryMmap>::new([0x02, 0, 0, 0, 0, 1], Box::new(backend)).unwrap();
    let handle = net.handle();
    let mut rig = QueueRig::new(input.size_log2, 2);
    rig.activate(&mut net, input.features);
    for op in input.steps() {
        match op {
            Op::Ring(op) => rig.apply(op),
            Op::Frame { len, header, byte } => {
                let mut w = wire.lock().unwrap();
                if w.inbox.len() < INBOX_MAX {
                    let len = usize::from(*len);
                    let mut f = vec![*byte; len];
                    let h = len.min(header.len());
                    f[..h].copy_from_slice(&header[..h]);
                    w.inbox.push_back(f);
                }
            }
            Op::Fail { reads, writes } => {
                let mut w = wire.lock().unwrap();
                (w.fail_reads, w.fail_writes) = (*reads, *writes);
            }
            Op::Receive => {
                rig.checked(|| handle.receive());
            }
            Op::NotifyRx => {
                let _ = rig.checked(|| net.process_queue(0));
            }
            Op::Transmit => {
                let _ = rig.checked(|| net.process_queue(1));
            }
            Op::Reset { features } => rig.reset_and_activate(&mut net, *features),
            Op::HoldEnded => rig.checked(|| handle.hold_ended()),
        }
    }
    let (sent, given) = {
        let w = wire.lock().unwrap();
        (w.sent, w.given)
    };
    let counters = handle.counters();
    assert_eq!(counters.tx_frames, sent, "frames counted as sent against frames the backend took");
    assert!(counters.rx_frames <= given, "more frames counted as received than the backend gave");
}));
