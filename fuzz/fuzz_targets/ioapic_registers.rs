//! The IOAPIC under a hostile guest: arbitrary reads and writes of its MMIO
//! window (IOREGSEL, IOWIN, EOI, anything else, any width), interleaved
//! with pin changes and end-of-interrupt broadcasts from the other side.
//!
//! Oracle: no panic; the version register keeps its value; every route
//! table it reports has one entry per pin.

#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use dmavm_devices::bus::BusDevice;
use dmavm_devices::interrupt::{InterruptError, MsiMessage, MsiSink};
use dmavm_devices::ioapic::{Ioapic, IoapicRoute, IoapicSink};
use dmavm_fuzz::Width;
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Sink {
    route_lens: Mutex<Vec<usize>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MsiSink for Sink {
    fn send_msi(&self, msg: MsiMessage) -> Result<(), InterruptError> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(InterruptError::Delivery { msg, source: std::io::Error::other("fuzz") });
        }
        Ok(())
    }
}

impl IoapicSink for Sink {
    fn routes_changed(&self, routes: &[IoapicRoute]) {
        self.route_lens.lock().unwrap().push(routes.len());
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    /// IOREGSEL (0x00), IOWIN (0x10), EOI (0x40) and their neighbours.
    Near(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        at: Offset,
        width: Width,
    },
    Write {
        at: Offset,
        width: Width,
        value: u64,
    },
    /// Selects register `reg` and writes `value` through the window.
    Reg {
        reg: u8,
        value: u32,
    },
    Pin {
        pin: u32,
        level: bool,
    },
    Eoi(u8),
    FailDelivery(bool),
    Reset,
}

fuzz_target!(|ops: Vec<Op>| dmavm_fuzz::within_cpu_budget(|| {
    let sink = Arc::new(Sink::default());
    let mut io = Ioapic::new(sink.clone());
    let version = |io: &mut Ioapic| {
        io.write(0, &1u32.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(0x10, &mut b);
        u32::from_le_bytes(b)
    };
    let v0 = version(&mut io);
    for op in ops.iter().take(256) {
        match *op {
            Op::Read { at, width } => {
                let mut b = [0u8; 16];
                io.read(offset(at), &mut b[..width.len()]);
            }
            Op::Write { at, width, value } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&value.to_le_bytes());
                io.write(offset(at), &b[..width.len()]);
            }
            Op::Reg { reg, value } => {
                io.write(0, &u32::from(reg).to_le_bytes());
                io.write(0x10, &value.to_le_bytes());
            }
            Op::Pin { pin, level } => {
                let _ = io.service_irq(pin % 32, level);
            }
            Op::Eoi(v) => {
                let _ = io.end_of_interrupt(v);
            }
            Op::FailDelivery(f) => sink.fail.store(f, std::sync::atomic::Ordering::Relaxed),
            Op::Reset => io.reset(),
        }
        let n = io.routes().count();
        assert!(sink.route_lens.lock().unwrap().iter().all(|&l| l == n), "a route table of the wrong size");
    }
    assert_eq!(version(&mut io), v0, "the version register changed");
}));

fn offset(at: Offset) -> u64 {
    match at {
        Offset::Near(n) => u64::from(n % 0x50),
        Offset::Raw(a) => a,
    }
}
