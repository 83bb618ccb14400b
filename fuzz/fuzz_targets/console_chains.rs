//! virtio-console under a hostile driver: arbitrary receive and transmit
//! rings (split and indirect chains, any length), arbitrary features,
//! input of any size pushed by the VMM, resets and re-activation,
//! interleaved.
//!
//! Oracle: no panic; after every run, no guest byte outside both queues'
//! used rings and device-writable descriptors changed; the device never
//! claims to have taken more input than it was offered; one transmit pass
//! writes at most `CONSOLE_TRANSMIT_BUDGET` bytes.

#![no_main]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbitrary::Arbitrary;
use dmavm_devices::virtio::{Console, VirtioDevice, CONSOLE_TRANSMIT_BUDGET};
use dmavm_fuzz::{ChainProgram, QueueRig, RingOp};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestMemoryMmap;

/// Counts what the device writes out (keeping it would let the guest's
/// transmit chains grow the harness without bound).
struct Sink(Arc<AtomicU64>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Ring(RingOp),
    /// Input typed at the host's terminal, `len` bytes of `byte`.
    Input {
        len: u16,
        byte: u8,
    },
    /// Whether input would be taken now.
    Room,
    NotifyRx,
    Transmit,
    Reset {
        features: u64,
    },
}

fuzz_target!(|input: ChainProgram<Op>| dmavm_fuzz::within_cpu_budget(|| {
    let out = Arc::new(AtomicU64::new(0));
    let mut console = Console::<GuestMemoryMmap>::new(Box::new(Sink(out.clone()))).unwrap();
    let host = console.input();
    let mut rig = QueueRig::new(input.size_log2, 2);
    rig.activate(&mut console, input.features);
    for op in input.steps() {
        match op {
            Op::Ring(op) => rig.apply(op),
            Op::Input { len, byte } => {
                let bytes = vec![*byte; usize::from(*len)];
                let taken = rig.checked(|| host.push_input(&bytes));
                assert!(taken <= bytes.len(), "took {taken} of {} input bytes", bytes.len());
            }
            Op::Room => {
                rig.checked(|| host.input_room());
            }
            Op::NotifyRx => {
                let _ = rig.checked(|| console.process_queue(0));
            }
            Op::Transmit => {
                let before = out.load(Ordering::Relaxed);
                let _ = rig.checked(|| console.process_queue(1));
                let wrote = out.load(Ordering::Relaxed) - before;
                assert!(wrote <= CONSOLE_TRANSMIT_BUDGET as u64, "one transmit pass wrote {wrote} bytes");
            }
            Op::Reset { features } => rig.reset_and_activate(&mut console, *features),
        }
    }
}));
