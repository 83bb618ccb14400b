//! virtio-rng under a hostile driver: an arbitrary request ring (split
//! and indirect chains, any length, readable buffers where writable ones
//! belong), arbitrary features, notifies and resets, interleaved.
//!
//! Oracle: no panic; after every run, no guest byte outside the used ring
//! and the device-writable descriptors changed.

#![no_main]

use arbitrary::Arbitrary;
use dmavm_devices::virtio::{Rng, VirtioDevice};
use dmavm_fuzz::{ChainProgram, QueueRig, RingOp};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestMemoryMmap;

#[derive(Arbitrary, Debug)]
enum Op {
    Ring(RingOp),
    Notify,
    Reset { features: u64 },
}

fuzz_target!(|input: ChainProgram<Op>| dmavm_fuzz::within_cpu_budget(|| {
    let mut rng = Rng::<GuestMemoryMmap>::new();
    let mut rig = QueueRig::new(input.size_log2, 1);
    rig.activate(&mut rng, input.features);
    for op in input.steps() {
        match op {
            Op::Ring(op) => rig.apply(op),
            Op::Notify => {
                let _ = rig.checked(|| rng.process_queue(0));
            }
            Op::Reset { features } => rig.reset_and_activate(&mut rng, *features),
        }
    }
}));
