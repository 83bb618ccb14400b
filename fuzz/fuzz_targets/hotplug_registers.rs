//! The hot-plug controller's registers under a hostile guest: arbitrary
//! reads and writes of its block (segment selects, ejects of any slot
//! mask, any offset and width), interleaved with the VMM's device
//! arrivals, removal requests and power-button presses.
//!
//! Oracle: no panic; a slot is reported ejected only while a device is in
//! it, and once; no slot the VMM never filled reads as present.

#![no_main]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use dmavm_devices::bus::BusDevice;
use dmavm_devices::hotplug_events::{HotplugEvents, EJECT, PRESENT, SEGMENT};
use dmavm_fuzz::Width;
use libfuzzer_sys::fuzz_target;

const SEGMENTS: [u16; 2] = [1, 3];

#[derive(Arbitrary, Debug)]
enum Op {
    Read { at: u8, width: Width },
    Write { at: u8, width: Width, value: u64 },
    /// Selects `segment` and ejects the slots of `mask`.
    Eject { segment: u16, mask: u32 },
    Added { segment: u16, slot: u8 },
    Removing { segment: u16, slot: u8 },
    PowerButton,
}

fuzz_target!(|ops: Vec<Op>| dmavm_fuzz::within_cpu_budget(|| {
    let ejected: Arc<Mutex<Vec<(u16, u8)>>> = Arc::default();
    let seen = ejected.clone();
    let mut block =
        HotplugEvents::new(&SEGMENTS, &[(1, 2)], || {}, move |s, n| seen.lock().unwrap().push((s, n))).unwrap();
    // The model: which slots hold a device.
    let mut present: BTreeSet<(u16, u8)> = [(1, 2)].into();
    for op in ops.iter().take(256) {
        let before = ejected.lock().unwrap().len();
        match *op {
            Op::Read { at, width } => {
                let mut b = [0u8; 16];
                block.read(u64::from(at % 0x20), &mut b[..width.len()]);
            }
            Op::Write { at, width, value } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&value.to_le_bytes());
                block.write(u64::from(at % 0x20), &b[..width.len()]);
            }
            Op::Eject { segment, mask } => {
                block.write(SEGMENT, &u32::from(segment).to_le_bytes());
                block.write(EJECT, &mask.to_le_bytes());
            }
            Op::Added { segment, slot } => {
                if block.device_added(segment, slot).is_ok() {
                    present.insert((segment, slot));
                } else {
                    assert!(!SEGMENTS.contains(&segment) || slot > 31, "a valid slot refused");
                }
            }
            Op::Removing { segment, slot } => {
                let _ = block.request_removal(segment, slot);
            }
            Op::PowerButton => block.press_power_button(),
        }
        for &(segment, slot) in &ejected.lock().unwrap()[before..] {
            assert!(present.remove(&(segment, slot)), "{segment}/{slot} ejected while empty or twice");
        }
        for &segment in &SEGMENTS {
            block.write(SEGMENT, &u32::from(segment).to_le_bytes());
            let mut b = [0u8; 4];
            block.read(PRESENT, &mut b);
            let bits = u32::from_le_bytes(b);
            let model: u32 = present.iter().filter(|(s, _)| *s == segment).map(|(_, n)| 1 << n).sum();
            assert_eq!(bits, model, "segment {segment}: present slots");
        }
    }
}));
