//! The virtio-mmio register window under a hostile driver: arbitrary reads
//! and writes at arbitrary offsets and widths, interleaved with notifies,
//! resets, status sequences, guest-memory writes and queue processing
//! (a virtio-rng or virtio-blk behind the window; the driver points the
//! rings wherever it likes).
//!
//! Oracle: no panic; the identification registers never change (magic,
//! version, vendor, device ID) whatever was written before.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use dmavm_devices::bus::BusDevice;
use dmavm_devices::interrupt::{InterruptError, InterruptLine};
use dmavm_devices::virtio::mmio::{MAGIC_VALUE, VENDOR_ID, VERSION};
use dmavm_devices::virtio::{DmaAccess, MmioTransport, VirtioTransport};
use dmavm_fuzz::{canary_memory, make_device, Addr, DeviceChoice, Width, MEM_SIZE, REGION_SPLIT};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

struct Line;

impl InterruptLine for Line {
    fn assert(&self) -> Result<(), InterruptError> {
        Ok(())
    }
    fn deassert(&self) -> Result<(), InterruptError> {
        Ok(())
    }
}

/// A register offset: a 32-bit register, a configuration-space byte, or
/// anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Reg(u8),
    Config(u8),
    Raw(u64),
}

impl Offset {
    fn get(self) -> u64 {
        match self {
            Offset::Reg(n) => u64::from(n % 64) * 4,
            Offset::Config(n) => 0x100 + u64::from(n),
            Offset::Raw(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read {
        offset: Offset,
        width: Width,
    },
    Write {
        offset: Offset,
        width: Width,
        value: u64,
    },
    Notify(u32),
    /// Writes the status register (0 resets the device).
    Status(u8),
    /// Points queue `sel` at rings in RAM (the common driver step, in one op).
    SetupQueue {
        sel: u8,
        size: u16,
        desc: Addr,
        driver: Addr,
        device: Addr,
    },
    Blob {
        at: Addr,
        bytes: Vec<u8>,
    },
    /// The event loop: processes every queue.
    Process,
}

#[derive(Arbitrary, Debug)]
struct Input {
    device: DeviceChoice,
    dma: u8,
    ops: Vec<Op>,
}

fn read32(t: &mut MmioTransport<GuestMemoryMmap>, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fuzz_target!(|input: Input| dmavm_fuzz::within_cpu_budget(|| {
    let mem = canary_memory(MEM_SIZE, REGION_SPLIT);
    let (device, _file) = make_device(input.device);
    let dma = match input.dma % 4 {
        0 => DmaAccess::GuestPhysical,
        1 => DmaAccess::PlatformIdentity,
        2 => DmaAccess::Translated,
        _ => DmaAccess::RestrictedPool,
    };
    let device_id = device.device_type();
    let mut t = MmioTransport::new(device, mem.clone(), Arc::new(Line), dma).unwrap();
    for op in input.ops.iter().take(128) {
        match *op {
            Op::Read { offset, width } => {
                let mut b = [0u8; 16];
                t.read(offset.get(), &mut b[..width.len()]);
            }
            Op::Write { offset, width, value } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&value.to_le_bytes());
                t.write(offset.get(), &b[..width.len()]);
            }
            Op::Notify(q) => t.write(0x50, &q.to_le_bytes()),
            Op::Status(s) => t.write(0x70, &u32::from(s).to_le_bytes()),
            Op::SetupQueue { sel, size: qsize, desc, driver, device } => {
                t.write(0x30, &u32::from(sel % 4).to_le_bytes());
                t.write(0x38, &u32::from(qsize).to_le_bytes());
                for (reg, a) in [(0x80, desc), (0x90, driver), (0xa0, device)] {
                    let a = a.resolve(MEM_SIZE, REGION_SPLIT);
                    t.write(reg, &(a as u32).to_le_bytes());
                    t.write(reg + 4, &((a >> 32) as u32).to_le_bytes());
                }
                t.write(0x44, &1u32.to_le_bytes());
            }
            Op::Blob { at, ref bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(at.resolve(MEM_SIZE, REGION_SPLIT)));
            }
            Op::Process => {
                for q in 0..t.queue_events().len() {
                    t.process_notification(q);
                }
            }
        }
    }
    assert_eq!(read32(&mut t, 0x000), MAGIC_VALUE);
    assert_eq!(read32(&mut t, 0x004), VERSION);
    assert_eq!(read32(&mut t, 0x008), device_id);
    assert_eq!(read32(&mut t, 0x00c), VENDOR_ID);
}));
