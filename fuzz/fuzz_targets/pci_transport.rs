//! The virtio-pci transport under a hostile driver, through the same path
//! as a vCPU's accesses: ECAM configuration reads and writes (any device
//! number, register and width: capabilities, BAR sizing and moves, the
//! command register, MSI-X control, the PCI configuration access window)
//! and MMIO reads and writes where the BARs are (common and device
//! configuration, notifications, ISR, the MSI-X table and PBA),
//! interleaved with guest-memory writes and queue processing.
//!
//! Oracle: no panic, no deadlock (libFuzzer's timeout); the host bridge
//! and the device keep their vendor and device IDs.

#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use dmavm_devices::bus::{Bus, BusDevice};
use dmavm_devices::interrupt::{InterruptError, MsiMessage};
use dmavm_devices::pci::{MsixBackend, PciEcam, PciRoot, PciWindows};
use dmavm_devices::virtio::{DmaAccess, VirtioPciTransport, VirtioTransport};
use dmavm_fuzz::{canary_memory, make_device, Addr, DeviceChoice, Width, MEM_SIZE, REGION_SPLIT};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

struct Msis;

impl MsixBackend for Msis {
    fn deliver(&self, _vector: u16, _msg: MsiMessage) -> Result<(), InterruptError> {
        Ok(())
    }
}

const MEM32: u64 = 0xc000_0000;
const MEM64: u64 = 0x1_0000_0000;

/// A guest-physical MMIO address: in one of the BAR windows, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mmio {
    Mem64(u16),
    Mem32(u32),
    Raw(u64),
}

impl Mmio {
    fn get(self) -> u64 {
        match self {
            Mmio::Mem64(n) => MEM64 + u64::from(n),
            Mmio::Mem32(n) => MEM32 + u64::from(n % 0x1000_0000),
            Mmio::Raw(a) => a,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Cfg {
    device: u8,
    function: u8,
    register: u16,
}

impl Cfg {
    fn offset(self) -> u64 {
        // Devices 0 (host bridge), 1 (the transport) and 2 (empty), mostly.
        let dev = u64::from(self.device % 4);
        (dev << 15) | (u64::from(self.function % 8) << 12) | u64::from(self.register % 4096)
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    CfgRead { at: Cfg, width: Width },
    CfgWrite { at: Cfg, width: Width, value: u64 },
    MmioRead { at: Mmio, width: Width },
    MmioWrite { at: Mmio, width: Width, value: u64 },
    Blob { at: Addr, bytes: Vec<u8> },
    Process,
}

#[derive(Arbitrary, Debug)]
struct Input {
    device: DeviceChoice,
    dma: u8,
    ops: Vec<Op>,
}

fn cfg32(ecam: &mut PciEcam, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    ecam.read(offset, &mut b);
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
    let t = VirtioPciTransport::new(device, mem.clone(), Arc::new(Msis), dma).unwrap();
    let queues = t.queue_events().len();
    let t = Arc::new(Mutex::new(t));
    let mmio = Arc::new(Bus::new());
    let windows = PciWindows { mem32: MEM32..0xd000_0000, mem64: Some(MEM64..0x2_0000_0000) };
    let mut root = PciRoot::new(mmio.clone(), windows).unwrap();
    root.add_device(t.clone()).unwrap();
    let mut ecam = PciEcam::new(Arc::new(Mutex::new(root)), 1);
    let ids = (cfg32(&mut ecam, 0), cfg32(&mut ecam, 1 << 15));
    for op in input.ops.iter().take(128) {
        match *op {
            Op::CfgRead { at, width } => {
                let mut b = [0u8; 16];
                ecam.read(at.offset(), &mut b[..width.len()]);
            }
            Op::CfgWrite { at, width, value } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&value.to_le_bytes());
                ecam.write(at.offset(), &b[..width.len()]);
            }
            Op::MmioRead { at, width } => {
                let mut b = [0u8; 16];
                // Nothing there is an answer too (the VMM reads all-ones).
                let _ = mmio.read(at.get(), &mut b[..width.len()]);
            }
            Op::MmioWrite { at, width, value } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&value.to_le_bytes());
                let _ = mmio.write(at.get(), &b[..width.len()]);
            }
            Op::Blob { at, ref bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(at.resolve(MEM_SIZE, REGION_SPLIT)));
            }
            Op::Process => {
                let mut t = t.lock().unwrap();
                for q in 0..queues {
                    t.process_notification(q);
                }
            }
        }
    }
    assert_eq!((cfg32(&mut ecam, 0), cfg32(&mut ecam, 1 << 15)), ids, "IDs changed");
}));
