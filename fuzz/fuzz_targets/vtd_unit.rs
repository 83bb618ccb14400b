//! The VT-d unit under a hostile guest: arbitrary register accesses (any
//! width, any offset, the command registers often), guest-written root,
//! context and second-level tables and invalidation queue descriptors
//! (8-byte stores anywhere in guest memory), and device accesses through
//! translated memory, interleaved.
//!
//! Oracle: no panic and no hang; CAP and ECAP keep their values; the
//! fault record index stays below the number of records.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use dmavm_fuzz::{canary_memory, Addr, Width, MEM_SIZE, REGION_SPLIT};
use dmavm_vtd::{translated_memory, FaultInterrupt, VtdConfig, VtdUnit, FAULT_RECORD_COUNT, REGISTER_SPACE};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

struct NoInterrupts;

impl FaultInterrupt for NoInterrupts {
    fn send_msi(&self, _address: u64, _data: u32) {}
}

/// Registers worth hitting often (VT-d 4.x, 11.4).
const REGISTERS: [u64; 22] = [
    0x18, 0x1c, 0x20, 0x24, 0x28, 0x2c, 0x34, 0x38, 0x3c, 0x40, 0x44, 0x80, 0x88, 0x90, 0x9c, 0xa0, 0xa8,
    0x400, 0x408, 0x40c, 0x500, 0x508,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Known(u8),
    Raw(u16),
}

impl Offset {
    fn resolve(self) -> u64 {
        match self {
            Offset::Known(i) => REGISTERS[usize::from(i) % REGISTERS.len()],
            Offset::Raw(o) => u64::from(o) % (REGISTER_SPACE + 16),
        }
    }
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
    /// The guest stores a table entry or a descriptor word.
    Store {
        at: Addr,
        value: u64,
    },
    /// A device with source ID `sid` (one of four) accesses `len` bytes.
    Dma {
        sid: u8,
        iova: Addr,
        len: u16,
        write: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    coherent: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| dmavm_fuzz::within_cpu_budget(|| {
    let mem = canary_memory(MEM_SIZE, REGION_SPLIT);
    let config = VtdConfig { coherent: input.coherent, iotlb_entries: 64 };
    let unit = VtdUnit::new(config, (*mem).clone(), Arc::new(NoInterrupts));
    let read64 = |offset: u64| {
        let mut b = [0u8; 8];
        unit.read(offset, &mut b);
        u64::from_le_bytes(b)
    };
    let cap = read64(0x08);
    let ecap = read64(0x10);
    let sids = [0x0018u16, 0x0019, 0x0100, 0xffff];
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Read { at, width } => {
                let mut buf = vec![0u8; width.len()];
                unit.read(at.resolve(), &mut buf);
            }
            Op::Write { at, width, value } => {
                let bytes = value.to_le_bytes();
                let len = width.len().min(8);
                unit.write(at.resolve(), &bytes[..len]);
            }
            Op::Store { at, value } => {
                let _ = mem.write_obj(value, GuestAddress(at.resolve(MEM_SIZE, REGION_SPLIT)));
            }
            Op::Dma { sid, iova, len, write } => {
                let device = translated_memory((*mem).clone(), unit.endpoint(sids[usize::from(sid) % 4]));
                let addr = GuestAddress(iova.resolve(MEM_SIZE, REGION_SPLIT));
                let mut buf = vec![0u8; usize::from(len)];
                let _ =
                    if write { device.write_slice(&buf, addr) } else { device.read_slice(&mut buf, addr) };
            }
        }
    }
    assert_eq!(read64(0x08), cap);
    assert_eq!(read64(0x10), ecap);
    let fri = (read64(0x30) >> 40) & 0xff;
    assert!(fri < FAULT_RECORD_COUNT as u64);
}));
