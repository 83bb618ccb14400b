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

use std::sync::Mutex;

use arbitrary::Arbitrary;
use dmavm_devices::test_utils::net_backend::{MemBackend, Wire};
use dmavm_devices::virtio::net::{Net, FRAME_MAX, VNET_HDR_LEN};
use dmavm_devices::virtio::VirtioDevice;
use dmavm_fuzz::{ChainProgram, QueueRig, RingOp};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestMemoryMmap;

/// Frames the backend holds for the device at most: the device must cope
/// with a backend that always has more, not with an unbounded harness.
const INBOX_MAX: usize = 64;

/// Takes the frames the device wrote since the last call, checking each
/// holds a header and at most `FRAME_MAX` bytes; returns how many. Called
/// after every step, so the harness holds no more than one step's frames.
fn take_sent(wire: &Mutex<Wire>) -> u64 {
    let mut w = wire.lock().unwrap();
    let sent = w.outbox.len() as u64;
    for bytes in w.outbox.drain(..) {
        assert!(bytes.len() >= VNET_HDR_LEN, "a {}-byte frame has no header", bytes.len());
        assert!(bytes.len() <= FRAME_MAX, "a {}-byte frame is larger than FRAME_MAX", bytes.len());
    }
    sent
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
    let (backend, wire) = MemBackend::new();
    let mut sent = 0;
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
        sent += take_sent(&wire);
    }
    let given = wire.lock().unwrap().given;
    let counters = handle.counters();
    assert_eq!(counters.tx_frames, sent, "frames counted as sent against frames the backend took");
    assert!(counters.rx_frames <= given, "more frames counted as received than the backend gave");
}));
