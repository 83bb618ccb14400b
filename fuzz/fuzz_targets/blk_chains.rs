//! virtio-blk under a hostile driver: arbitrary descriptor tables (split
//! and indirect chains, every request type, any sector and length) against
//! a 16-sector disk in a temporary file, with arbitrary features, queue
//! size and read-only flag.
//!
//! Oracle: no panic; after every queue run, no guest byte outside the used
//! ring and the device-writable descriptors changed; the disk file keeps
//! its size, and a read-only disk keeps its content.

#![no_main]

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use arbitrary::Arbitrary;
use dmavm_devices::test_utils::interrupts::Interrupts;
use dmavm_devices::test_utils::split_queue::Driver;
use dmavm_devices::virtio::{Activation, Block, BlockConfig, VirtioDevice, VIRTIO_F_VERSION_1};
use dmavm_fuzz::{canary_memory, Addr, Desc, Ring, Snapshot, MEM_SIZE, REGION_SPLIT};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

const SECTORS: u64 = 16;

/// A request header's type: every one virtio-blk defines, or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    In,
    Out,
    Flush,
    GetId,
    GetLifetime,
    Discard,
    WriteZeroes,
    SecureErase,
    Raw(u32),
}

impl Kind {
    fn value(self) -> u32 {
        match self {
            Kind::In => 0,
            Kind::Out => 1,
            Kind::Flush => 4,
            Kind::GetId => 8,
            Kind::GetLifetime => 10,
            Kind::Discard => 11,
            Kind::WriteZeroes => 13,
            Kind::SecureErase => 14,
            Kind::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Sector {
    Small(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A 16-byte request header at `at`.
    Header {
        at: Addr,
        kind: Kind,
        ioprio: u32,
        sector: Sector,
    },
    /// Discard / write-zeroes segments (16 bytes each) at `at`.
    Segments {
        at: Addr,
        segs: Vec<(Sector, u32, u32)>,
    },
    Desc {
        index: u16,
        desc: Desc,
    },
    Indirect {
        at: Addr,
        entries: Vec<Desc>,
    },
    Blob {
        at: Addr,
        bytes: Vec<u8>,
    },
    Publish {
        head: u16,
        bump: u8,
    },
    UsedEvent(u16),
    Process,
}

#[derive(Arbitrary, Debug)]
struct Input {
    read_only: bool,
    features: u64,
    /// log2 of the queue size (mod 9: 1..=256).
    size_log2: u8,
    ops: Vec<Op>,
}

fn file_bytes(file: &TempFile) -> Vec<u8> {
    let mut v = Vec::new();
    let mut f = file.as_file();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

fn sector(s: Sector) -> u64 {
    match s {
        Sector::Small(n) => u64::from(n % 20),
        Sector::Raw(n) => n,
    }
}

fuzz_target!(|input: Input| dmavm_fuzz::within_cpu_budget(|| {
    let file = TempFile::new().unwrap();
    let content: Vec<u8> = (0..SECTORS as usize * 512).map(|i| (i * 13 % 256) as u8).collect();
    file.as_file().write_all(&content).unwrap();
    let config = BlockConfig {
        file: file.as_file().try_clone().unwrap(),
        read_only: input.read_only,
        id: "fuzz".into(),
    };
    let mut block = Block::<GuestMemoryMmap>::new(config).unwrap();
    let mem = canary_memory(MEM_SIZE, REGION_SPLIT);
    let size = 1u16 << (input.size_log2 % 9);
    let queue = Driver::new(&mem, size).queue();
    let mut ring = Ring::new(&mem, 0, size);
    let offered = VirtioDevice::<GuestMemoryMmap>::device_features(&block);
    block
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![queue],
            acked_features: (input.features & offered) | VIRTIO_F_VERSION_1,
            interrupt: Arc::new(Interrupts::default()),
        })
        .unwrap();
    let resolve = |a: &Addr| a.resolve(MEM_SIZE, REGION_SPLIT);
    for op in input.ops.iter().take(64) {
        match op {
            Op::Header { at, kind, ioprio, sector: s } => {
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&kind.value().to_le_bytes());
                h[4..8].copy_from_slice(&ioprio.to_le_bytes());
                h[8..16].copy_from_slice(&sector(*s).to_le_bytes());
                let _ = mem.write_slice(&h, GuestAddress(resolve(at)));
            }
            Op::Segments { at, segs } => {
                let mut b = Vec::new();
                for &(s, n, flags) in segs.iter().take(16) {
                    b.extend_from_slice(&sector(s).to_le_bytes());
                    b.extend_from_slice(&(n % 64).to_le_bytes());
                    b.extend_from_slice(&flags.to_le_bytes());
                }
                let _ = mem.write_slice(&b, GuestAddress(resolve(at)));
            }
            Op::Desc { index, desc } => ring.write_desc(&mem, *index, desc.raw(MEM_SIZE, REGION_SPLIT)),
            Op::Indirect { at, entries } => {
                let at = resolve(at);
                for (i, d) in entries.iter().take(32).enumerate() {
                    let _ = mem.write_obj(
                        d.raw(MEM_SIZE, REGION_SPLIT),
                        GuestAddress(at.wrapping_add(16 * i as u64)),
                    );
                }
            }
            Op::Blob { at, bytes } => {
                let _ = mem.write_slice(bytes, GuestAddress(resolve(at)));
            }
            Op::Publish { head, bump } => ring.publish(&mem, *head, u16::from(*bump)),
            Op::UsedEvent(v) => ring.set_used_event(&mem, *v),
            Op::Process => {
                let (grants, before) =
                    dmavm_fuzz::oracle(|| (ring.granted(&mem, MEM_SIZE), Snapshot::new(&mem, MEM_SIZE)));
                // An error is the device's answer to a broken ring.
                let _ = block.process_queue(0);
                dmavm_fuzz::oracle(|| before.assert_within(&mem, &grants));
            }
        }
    }
    let now = file_bytes(&file);
    assert_eq!(now.len(), content.len(), "the disk file changed size");
    if input.read_only {
        assert!(now == content, "a read-only disk was written");
    }
}));
