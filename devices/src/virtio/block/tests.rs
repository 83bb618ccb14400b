//! virtio-blk end to end: chains written by a mock driver into canary-filled
//! guest memory, processed by the device, checked in the used ring, in the
//! status byte, in the host file, and in every guest byte outside the
//! buffers the request may write.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::test_utils::guest_memory::{memory, MemCheck, WriteProtected, MEM_SIZE, REGION_SPLIT};
use crate::test_utils::interrupts::Interrupts;
use crate::test_utils::split_queue::{used_ring, Driver};
use crate::virtio::device::InterruptKind;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// Device-readable / device-writable descriptor flags.
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x30000;

const SECTORS: u64 = 16;

fn disk_byte(i: usize) -> u8 {
    (i * 13 % 256) as u8
}

fn disk_content() -> Vec<u8> {
    (0..(SECTORS * 512) as usize).map(disk_byte).collect()
}

struct Rig {
    mem: Arc<GuestMemoryMmap>,
    file: TempFile,
    block: Block<GuestMemoryMmap>,
    irq: Arc<Interrupts>,
}

impl Rig {
    fn new(read_only: bool) -> Self {
        Self::with(&disk_content(), read_only, "dmavm-disk-0")
    }

    fn with(content: &[u8], read_only: bool, id: &str) -> Self {
        let file = TempFile::new().unwrap();
        file.as_file().write_all(content).unwrap();
        let block =
            Block::new(BlockConfig { file: file.as_file().try_clone().unwrap(), read_only, id: id.into() })
                .unwrap();
        Self { mem: memory(), file, block, irq: Arc::new(Interrupts::default()) }
    }

    fn activate(&mut self, d: &Driver, features: u64) {
        self.block
            .activate(Activation {
                mem: self.mem.clone(),
                queues: vec![d.queue()],
                acked_features: VIRTIO_F_VERSION_1 | features,
                interrupt: self.irq.clone(),
            })
            .unwrap();
    }

    fn header(&self, addr: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(addr)).unwrap();
    }

    fn byte(&self, addr: u64) -> u8 {
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn file(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut f = self.file.as_file();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    }
}

/// One chain, processed; returns the used entry and a snapshot of guest
/// memory from just before the device ran.
fn run_one(rig: &mut Rig, bufs: &[(u64, u32, u16)]) -> ((u32, u32), MemCheck) {
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    let head = d.chain(bufs);
    d.publish(head);
    let check = MemCheck::new(&mem);
    rig.activate(&d, 0);
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used_idx(), 1);
    (d.used(0), check)
}

// ---------------------------------------------------------------- identity

#[test]
fn features_config_space_and_capacity() {
    let mut content = disk_content();
    content.truncate(3 * 512 + 100);
    let rig = Rig::with(&content, false, "x");
    let b = &rig.block;
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::device_type(b), 2);
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::queue_max_sizes(b), &[256]);
    // A partial trailing sector is not visible.
    assert_eq!(b.capacity(), 3);
    let mut cap = [0u8; 8];
    VirtioDevice::<GuestMemoryMmap>::read_config(b, 0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 3);
    let mut w = [0u8; 4];
    VirtioDevice::<GuestMemoryMmap>::read_config(b, 12, &mut w);
    assert_eq!(u32::from_le_bytes(w), 254);
    VirtioDevice::<GuestMemoryMmap>::read_config(b, 20, &mut w);
    assert_eq!(u32::from_le_bytes(w), 512);
    VirtioDevice::<GuestMemoryMmap>::read_config(b, 0x1000, &mut w);
    assert_eq!(w, [0; 4]);

    let f = VirtioDevice::<GuestMemoryMmap>::device_features(b);
    let expected = VIRTIO_F_VERSION_1
        | VIRTIO_RING_F_INDIRECT_DESC
        | VIRTIO_RING_F_EVENT_IDX
        | 1 << VIRTIO_BLK_F_FLUSH
        | 1 << VIRTIO_BLK_F_SEG_MAX
        | 1 << VIRTIO_BLK_F_BLK_SIZE;
    assert_eq!(f, expected);

    let ro = Block::<GuestMemoryMmap>::new(BlockConfig {
        file: rig.file.as_file().try_clone().unwrap(),
        read_only: true,
        id: String::new(),
    })
    .unwrap();
    let f = VirtioDevice::<GuestMemoryMmap>::device_features(&ro);
    assert_eq!(f, expected | 1 << VIRTIO_BLK_F_RO);
}

#[test]
fn id_longer_than_20_bytes_is_refused() {
    let file = TempFile::new().unwrap();
    let r = Block::<GuestMemoryMmap>::new(BlockConfig {
        file: file.as_file().try_clone().unwrap(),
        read_only: false,
        id: "123456789012345678901".into(),
    });
    assert!(matches!(r, Err(BlockError::IdTooLong(21))));
}

#[test]
fn activation_needs_a_ready_queue() {
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let d = Driver::new(&mem, 16);
    let mut q = d.queue();
    q.set_ready(false);
    let r = rig.block.activate(Activation {
        mem: rig.mem.clone(),
        queues: vec![q],
        acked_features: VIRTIO_F_VERSION_1,
        interrupt: rig.irq.clone(),
    });
    assert!(matches!(r, Err(DeviceError::QueueNotReady(0))));
    let r = rig.block.activate(Activation {
        mem: rig.mem.clone(),
        queues: vec![],
        acked_features: VIRTIO_F_VERSION_1,
        interrupt: rig.irq.clone(),
    });
    assert!(matches!(r, Err(DeviceError::QueueNotReady(0))));
    // Notifications before activation, or for another queue, do nothing.
    rig.block.process_queue(0).unwrap();
    rig.activate(&d, 0);
    rig.block.process_queue(3).unwrap();
    rig.block.reset();
    rig.block.process_queue(0).unwrap();
    assert_eq!(rig.irq.count(), 0);
}

// ---------------------------------------------------------------- requests

#[test]
fn read() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 2);
    let (used, check) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1025));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(rig.bytes(DATA, 1024), &disk_content()[1024..2048]);
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (DATA, 1024), (STATUS, 1)]);
    assert_eq!(rig.irq.kinds(), vec![InterruptKind::Queue(0)]);
}

#[test]
fn write() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_OUT, 3);
    let (used, check) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 1024, R), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    let mut expected = disk_content();
    expected[3 * 512..5 * 512].copy_from_slice(&rig.bytes(DATA, 1024));
    assert_eq!(rig.file(), expected);
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (STATUS, 1)]);
}

#[test]
fn flush() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_FLUSH, 0);
    let (used, _) = run_one(&mut rig, &[(HDR, 16, R), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(rig.file(), disk_content());
}

/// What the device had told the driver at each sync of the backing file:
/// the used index and the first request's status byte (`STATUS`).
#[derive(Debug, Default)]
struct SyncLog(std::sync::Mutex<Vec<(u16, u8)>>);

impl SyncLog {
    /// Hooks `rig`'s disk so that every sync records what the driver could
    /// see at that moment.
    fn attach(rig: &mut Rig) -> Arc<Self> {
        let log = Arc::new(Self::default());
        let (mem, seen) = (rig.mem.clone(), log.clone());
        let (used, _) = used_ring(16);
        rig.block.disk.on_sync = Some(Box::new(move || {
            let idx = mem.read_obj::<u16>(GuestAddress(used + 2)).unwrap();
            let status = mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap();
            seen.0.lock().unwrap().push((idx, status));
        }));
        log
    }

    fn entries(&self) -> Vec<(u16, u8)> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn flush_completes_only_after_the_sync_of_the_writes_before_it() {
    let mut rig = Rig::new(false);
    let log = SyncLog::attach(&mut rig);
    let mem = rig.mem.clone();
    let canary_status = rig.byte(STATUS);
    let mut d = Driver::new(&mem, 16);
    // An OUT of two sectors, then a FLUSH, in one batch; FLUSH's status
    // byte is `STATUS`, the write's `STATUS + 1`.
    rig.header(HDR, T_FLUSH, 0);
    rig.header(HDR + 0x100, T_OUT, 5);
    let w = d.chain(&[(HDR + 0x100, 16, R), (DATA, 1024, R), (STATUS + 1, 1, W)]);
    d.publish(w);
    let f = d.chain(&[(HDR, 16, R), (STATUS, 1, W)]);
    d.publish(f);
    rig.activate(&d, 1 << VIRTIO_BLK_F_FLUSH);
    rig.block.process_queue(0).unwrap();

    // One sync, for the FLUSH (the OUT completed without one: write-back),
    // while the driver could see the OUT completed and the FLUSH not yet.
    assert_eq!(log.entries(), vec![(1, canary_status)]);
    assert_eq!(d.used_idx(), 2);
    assert_eq!(d.used(0), (u32::from(w), 1));
    assert_eq!(d.used(1), (u32::from(f), 1));
    assert_eq!(rig.byte(STATUS + 1), S_OK);
    assert_eq!(rig.byte(STATUS), S_OK);
    let mut expected = disk_content();
    expected[5 * 512..7 * 512].copy_from_slice(&rig.bytes(DATA, 1024));
    assert_eq!(rig.file(), expected);
}

#[test]
fn without_negotiated_flush_each_write_is_synced_before_it_completes() {
    let mut rig = Rig::new(false);
    let log = SyncLog::attach(&mut rig);
    let canary_status = rig.byte(STATUS);
    rig.header(HDR, T_OUT, 1);
    // run_one acknowledges no device feature: VIRTIO_BLK_F_FLUSH offered,
    // not negotiated.
    let (used, _) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(log.entries(), vec![(0, canary_status)]);
    assert_eq!(&rig.file()[512..1024], &rig.bytes(DATA, 512)[..]);
}

#[test]
fn flush_whose_sync_fails_completes_with_ioerr() {
    // /dev/null has no fsync operation: fdatasync fails with EINVAL, as it
    // would on a backing store that lost the data. Seeking it works, so it
    // makes a disk (of 0 sectors; FLUSH has no sector range).
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").unwrap();
    assert!(null.sync_data().is_err(), "the test needs a file whose sync fails");
    let mut rig = Rig::new(false);
    rig.block = Block::new(BlockConfig { file: null, read_only: false, id: "null".into() }).unwrap();
    let log = SyncLog::attach(&mut rig);
    let canary_status = rig.byte(STATUS);
    rig.header(HDR, T_FLUSH, 0);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    let h = d.chain(&[(HDR, 16, R), (STATUS, 1, W)]);
    d.publish(h);
    let check = MemCheck::new(&mem);
    rig.activate(&d, 1 << VIRTIO_BLK_F_FLUSH);
    rig.block.process_queue(0).unwrap();
    assert_eq!(log.entries(), vec![(0, canary_status)]);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.used(0), (0, 1));
    assert_eq!(rig.byte(STATUS), S_IOERR);
    check.assert_only_changed(&mem, &[used_ring(16), (STATUS, 1)]);
}

#[test]
fn get_id() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_GET_ID, 0);
    let (used, check) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 20, W), (STATUS, 1, W)]);
    assert_eq!(used, (0, 21));
    assert_eq!(rig.byte(STATUS), S_OK);
    let mut expected = b"dmavm-disk-0".to_vec();
    expected.resize(20, 0);
    assert_eq!(rig.bytes(DATA, 20), expected);
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (DATA, 20), (STATUS, 1)]);
}

#[test]
fn get_id_of_exactly_20_bytes_into_a_short_buffer() {
    let mut rig = Rig::with(&disk_content(), false, "ABCDEFGHIJKLMNOPQRST");
    rig.header(HDR, T_GET_ID, 0);
    // 7 + 5 bytes of buffer: only 12 bytes of the serial fit.
    let (used, check) =
        run_one(&mut rig, &[(HDR, 16, R), (DATA, 7, W), (DATA + 0x100, 5, W), (STATUS, 1, W)]);
    assert_eq!(used, (0, 13));
    assert_eq!(rig.bytes(DATA, 7), b"ABCDEFG");
    assert_eq!(rig.bytes(DATA + 0x100, 5), b"HIJKL");
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (DATA, 7), (DATA + 0x100, 5), (STATUS, 1)]);
}

#[test]
fn read_only_disk_refuses_writes_but_reads() {
    let mut rig = Rig::new(true);
    rig.header(HDR, T_OUT, 0);
    let (used, check) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_IOERR);
    assert_eq!(rig.file(), disk_content());
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (STATUS, 1)]);

    let mut rig = Rig::new(true);
    rig.header(HDR, T_IN, 1);
    let (used, _) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(used, (0, 513));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(rig.bytes(DATA, 512), &disk_content()[512..1024]);
}

/// Data spread over many descriptors of odd sizes, one straddling the
/// boundary between two guest memory regions.
const SEGMENTS: [(u64, u32); 6] = [
    (DATA, 100),
    (DATA + 0x1000, 412),
    (DATA + 0x2000, 1),
    (DATA + 0x3000, 511),
    (REGION_SPLIT - 0x100, 512),
    (DATA + 0x5000, 512),
];

#[test]
fn multi_segment_read() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 5);
    let mut bufs = vec![(HDR, 16, R)];
    bufs.extend(SEGMENTS.iter().map(|&(a, l)| (a, l, W)));
    bufs.push((STATUS, 1, W));
    let (used, check) = run_one(&mut rig, &bufs);
    assert_eq!(used, (0, 2049));
    assert_eq!(rig.byte(STATUS), S_OK);
    let got: Vec<u8> = SEGMENTS.iter().flat_map(|&(a, l)| rig.bytes(a, l as usize)).collect();
    assert_eq!(got, &disk_content()[5 * 512..9 * 512]);
    let mem = rig.mem.clone();
    let mut allowed: Vec<_> = SEGMENTS.iter().map(|&(a, l)| (a, l as usize)).collect();
    allowed.extend([used_ring(16), (STATUS, 1)]);
    check.assert_only_changed(&mem, &allowed);
}

#[test]
fn multi_segment_write() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_OUT, 7);
    let mut bufs = vec![(HDR, 16, R)];
    bufs.extend(SEGMENTS.iter().map(|&(a, l)| (a, l, R)));
    bufs.push((STATUS, 1, W));
    let (used, _) = run_one(&mut rig, &bufs);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    let data: Vec<u8> = SEGMENTS.iter().flat_map(|&(a, l)| rig.bytes(a, l as usize)).collect();
    let mut expected = disk_content();
    expected[7 * 512..11 * 512].copy_from_slice(&data);
    assert_eq!(rig.file(), expected);
}

#[test]
fn framing_is_free() {
    // Header split 10 + 6 across descriptors; the data and the status byte
    // share one device-writable descriptor.
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 1);
    let other = HDR + 0x100;
    let h = rig.bytes(HDR, 16);
    rig.mem.write_slice(&h[10..], GuestAddress(other)).unwrap();
    let (used, check) = run_one(&mut rig, &[(HDR, 10, R), (other, 6, R), (DATA, 513, W)]);
    assert_eq!(used, (0, 513));
    assert_eq!(rig.bytes(DATA, 512), &disk_content()[512..1024]);
    assert_eq!(rig.byte(DATA + 512), S_OK);
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (DATA, 513)]);
}

#[test]
fn unsupported_request_type() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_DISCARD, 0);
    let (used, check) = run_one(&mut rig, &[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]);
    assert_eq!(used, (0, 1));
    assert_eq!(rig.byte(STATUS), S_UNSUPP);
    assert_eq!(rig.file(), disk_content());
    let mem = rig.mem.clone();
    check.assert_only_changed(&mem, &[used_ring(16), (STATUS, 1)]);
}

#[test]
fn indirect_request() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    let t = [(HDR, 16, R), (DATA, 512, W), (DATA + 0x1000, 512, W), (STATUS, 1, W)];
    let mem = rig.mem.clone();
    Driver::new(&mem, 16).indirect_table(0x40000, &t);
    let (used, check) = run_one(&mut rig, &[(0x40000, 64, INDIRECT)]);
    assert_eq!(used, (0, 1025));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(rig.bytes(DATA, 512), &disk_content()[..512]);
    assert_eq!(rig.bytes(DATA + 0x1000, 512), &disk_content()[512..1024]);
    check.assert_only_changed(&mem, &[used_ring(16), (DATA, 512), (DATA + 0x1000, 512), (STATUS, 1)]);
}

#[test]
fn chain_as_long_as_the_queue() {
    // Header, 14 x 512 bytes, status: all 16 descriptors of the queue.
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 2);
    let mut bufs = vec![(HDR, 16, R)];
    bufs.extend((0..14u64).map(|i| (0x50000 + i * 0x400, 512, W)));
    bufs.push((STATUS, 1, W));
    let (used, _) = run_one(&mut rig, &bufs);
    assert_eq!(used, (0, 14 * 512 + 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    for i in 0..14usize {
        assert_eq!(rig.bytes(0x50000 + i as u64 * 0x400, 512), &disk_content()[(2 + i) * 512..(3 + i) * 512]);
    }
}

#[test]
fn one_interrupt_per_batch() {
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    for i in 0..4u64 {
        rig.header(HDR + i * 0x100, T_IN, i);
        let h = d.chain(&[(HDR + i * 0x100, 16, R), (DATA + i * 0x1000, 512, W), (STATUS + i, 1, W)]);
        d.publish(h);
    }
    rig.activate(&d, 0);
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used_idx(), 4);
    for i in 0..4u16 {
        assert_eq!(d.used(i), (u32::from(i) * 3, 513));
        assert_eq!(rig.byte(STATUS + u64::from(i)), S_OK);
    }
    assert_eq!(rig.irq.count(), 1);
}

#[test]
fn event_idx_suppresses_and_rearms() {
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    for i in 0..6u64 {
        rig.header(HDR + i * 0x100, T_FLUSH, 0);
    }
    // The driver wants an interrupt only once used idx passes 4.
    d.set_used_event(4);
    let h = d.chain(&[(HDR, 16, R), (STATUS, 1, W)]);
    d.publish(h);
    rig.activate(&d, VIRTIO_RING_F_EVENT_IDX);
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used_idx(), 1);
    assert_eq!(rig.irq.count(), 0);
    // Notifications re-enabled: the device asks to be kicked at avail idx 1.
    assert_eq!(d.avail_event(), 1);
    for i in 1..6u64 {
        let h = d.chain(&[(HDR + i * 0x100, 16, R), (STATUS + i, 1, W)]);
        d.publish(h);
    }
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used_idx(), 6);
    assert_eq!(rig.irq.count(), 1);
    assert_eq!(d.avail_event(), 6);
}

#[test]
fn without_event_idx_every_batch_interrupts() {
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    rig.header(HDR, T_FLUSH, 0);
    d.set_used_event(100);
    let h = d.chain(&[(HDR, 16, R), (STATUS, 1, W)]);
    d.publish(h);
    rig.activate(&d, 0);
    rig.block.process_queue(0).unwrap();
    assert_eq!(rig.irq.count(), 1);
    // Nothing new: no interrupt.
    rig.block.process_queue(0).unwrap();
    assert_eq!(rig.irq.count(), 1);
}

// ---------------------------------------------------------------- hostile

/// Runs the chains as given (descriptors already written by `setup`), and
/// checks that each got used length `expect_len` and that guest memory
/// changed only in the used ring and in `allowed`.
fn hostile(
    rig: &mut Rig,
    queue_size: u16,
    setup: impl FnOnce(&Rig, &mut Driver) -> Vec<u16>,
    expect: &[u32],
    allowed: &[(u64, usize)],
) {
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, queue_size);
    let heads = setup(rig, &mut d);
    for &h in &heads {
        d.publish(h);
    }
    let check = MemCheck::new(&mem);
    rig.activate(&d, 0);
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used_idx() as usize, heads.len());
    for (i, (&h, &len)) in heads.iter().zip(expect).enumerate() {
        assert_eq!(d.used(i as u16), (u32::from(h), len), "chain {i} (head {h})");
    }
    let mut allowed = allowed.to_vec();
    allowed.push(d.used_ring());
    check.assert_only_changed(&mem, &allowed);
    assert_eq!(rig.file(), disk_content(), "host file changed");
}

#[test]
fn descriptor_loop_is_consumed_unused() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    hostile(
        &mut rig,
        16,
        |_, d| {
            // 0 -> 1 -> 2 -> 1 ...
            d.desc(0, HDR, 16, R | NEXT, 1);
            d.desc(1, DATA, 512, W | NEXT, 2);
            d.desc(2, STATUS, 1, W | NEXT, 1);
            // A descriptor pointing at itself.
            d.desc(3, STATUS + 1, 1, W | NEXT, 3);
            vec![0, 3]
        },
        &[0, 0],
        &[],
    );
}

#[test]
fn next_index_outside_the_table_is_consumed_unused() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    hostile(
        &mut rig,
        16,
        |_, d| {
            d.desc(0, HDR, 16, R | NEXT, 1);
            d.desc(1, DATA, 512, W | NEXT, 200);
            vec![0]
        },
        &[0],
        &[],
    );
}

#[test]
fn address_outside_guest_memory_fails_the_request() {
    let mut rig = Rig::new(false);
    let end = MEM_SIZE as u64;
    hostile(
        &mut rig,
        32,
        |rig, d| {
            rig.header(HDR, T_IN, 0);
            rig.header(HDR + 0x100, T_OUT, 0);
            vec![
                // IN into memory that does not exist.
                d.chain(&[(HDR, 16, R), (end + 0x1000, 512, W), (STATUS, 1, W)]),
                // IN into a buffer running off the end of memory: nothing of
                // the part inside may be written either.
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (end - 256, 512, W), (STATUS + 1, 1, W)]),
                // OUT from memory that does not exist.
                d.chain(&[(HDR + 0x100, 16, R), (end, 512, R), (STATUS + 2, 1, W)]),
                // Header outside memory.
                d.chain(&[(end + 0x10, 16, R), (STATUS + 3, 1, W)]),
                // An address that wraps around the 64-bit space.
                d.chain(&[(HDR, 16, R), (u64::MAX - 255, 512, W), (STATUS + 4, 1, W)]),
                // Status byte outside memory: nothing is done or written.
                d.chain(&[(HDR, 16, R), (DATA + 0x1000, 512, W), (end + 0x100, 1, W)]),
                // Status descriptor whose last byte wraps around.
                d.chain(&[(HDR, 16, R), (DATA + 0x2000, 512, W), (u64::MAX, 2, W)]),
            ]
        },
        &[1, 1, 1, 1, 1, 0, 0],
        &[(STATUS, 5)],
    );
    for i in 0..5 {
        assert_eq!(rig.byte(STATUS + i), S_IOERR);
    }
}

#[test]
fn length_and_range_overflows_fail_the_request() {
    let mut rig = Rig::new(false);
    hostile(
        &mut rig,
        32,
        |rig, d| {
            // sector * 512 overflows.
            rig.header(HDR, T_IN, u64::MAX / 512 + 1);
            // sector * 512 fits, + len overflows.
            rig.header(HDR + 0x100, T_IN, (u64::MAX - 511) / 512);
            // Past the end of the disk.
            rig.header(HDR + 0x200, T_IN, SECTORS - 1);
            // A write past the end of the disk.
            rig.header(HDR + 0x300, T_OUT, SECTORS);
            // Not a whole number of sectors.
            rig.header(HDR + 0x400, T_IN, 0);
            vec![
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]),
                d.chain(&[(HDR + 0x100, 16, R), (DATA, 1024, W), (STATUS + 1, 1, W)]),
                d.chain(&[(HDR + 0x200, 16, R), (DATA, 1024, W), (STATUS + 2, 1, W)]),
                d.chain(&[(HDR + 0x300, 16, R), (DATA, 512, R), (STATUS + 3, 1, W)]),
                d.chain(&[(HDR + 0x400, 16, R), (DATA, 500, W), (STATUS + 4, 1, W)]),
                // Buffers adding up to more than 2^32 bytes: the chain is cut.
                d.chain(&[(HDR + 0x400, 16, R), (DATA, 0xffff_fff0, W), (DATA, 0x20, W), (STATUS + 5, 1, W)]),
            ]
        },
        &[1, 1, 1, 1, 1, 0],
        &[(STATUS, 5)],
    );
    for i in 0..5 {
        assert_eq!(rig.byte(STATUS + i), S_IOERR, "status {i}");
    }
}

/// An indirect table of `data` buffers between header and status: all 16
/// sectors of the disk, read from sector 0, in buffers of 32 bytes but for
/// the last one, which takes the rest.
fn long_indirect_read(data: usize) -> Vec<(u64, u32, u16)> {
    let mut t = vec![(HDR, 16, R)];
    t.extend((0..data - 1).map(|i| (0x50000 + i as u64 * 0x20, 32, W)));
    let rest = (SECTORS * 512) as u32 - 32 * (data as u32 - 1);
    t.push((0x50000 + (data as u64 - 1) * 0x20, rest, W));
    t.push((STATUS, 1, W));
    t
}

/// The longest chain the device takes, in one indirect table on a queue
/// of 16: `seg_max` + 2 = 256 descriptors (see `max_chain`), as Linux
/// builds them from `seg_max` on a ring it had to shrink.
#[test]
fn indirect_chain_of_seg_max_plus_two_on_a_small_queue_is_served() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    let t = long_indirect_read(usize::from(BLOCK_QUEUE_SIZE) - 2);
    assert_eq!(t.len(), 256);
    let mem = rig.mem.clone();
    Driver::new(&mem, 16).indirect_table(0x40000, &t);
    let (used, _) = run_one(&mut rig, &[(0x40000, t.len() as u32 * 16, INDIRECT)]);
    assert_eq!(used, (0, SECTORS as u32 * 512 + 1));
    assert_eq!(rig.byte(STATUS), S_OK);
    assert_eq!(rig.bytes(0x50000, SECTORS as usize * 512), &disk_content()[..]);
}

/// One descriptor more than both the queue size and `seg_max` + 2.
#[test]
fn indirect_chain_longer_than_seg_max_plus_two_is_consumed_unused() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    hostile(
        &mut rig,
        16,
        |_, d| {
            let t = long_indirect_read(usize::from(BLOCK_QUEUE_SIZE) - 1);
            assert_eq!(t.len(), 257);
            d.indirect_table(0x40000, &t);
            vec![d.chain(&[(0x40000, t.len() as u32 * 16, INDIRECT)])]
        },
        &[0],
        &[],
    );
}

/// On a queue of the largest size, the queue size is the limit.
#[test]
fn indirect_chain_as_long_as_the_largest_queue_is_served() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    let t = long_indirect_read(usize::from(BLOCK_QUEUE_SIZE) - 2);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, BLOCK_QUEUE_SIZE);
    d.indirect_table(0x40000, &t);
    let head = d.chain(&[(0x40000, t.len() as u32 * 16, INDIRECT)]);
    d.publish(head);
    rig.activate(&d, 0);
    rig.block.process_queue(0).unwrap();
    assert_eq!(d.used(0), (u32::from(head), SECTORS as u32 * 512 + 1));
    assert_eq!(rig.byte(STATUS), S_OK);
}

#[test]
fn write_only_buffer_where_read_only_is_required() {
    let mut rig = Rig::new(false);
    hostile(
        &mut rig,
        16,
        |rig, d| {
            rig.header(HDR, T_OUT, 0);
            vec![
                // OUT data in a device-writable buffer.
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]),
                // Half the OUT data device-readable, half device-writable.
                d.chain(&[(HDR, 16, R), (DATA, 512, R), (DATA + 0x1000, 512, W), (STATUS + 1, 1, W)]),
                // The header in a device-writable buffer.
                d.chain(&[(HDR, 16, W), (DATA, 512, W), (STATUS + 2, 1, W)]),
            ]
        },
        &[1, 1, 1],
        &[(STATUS, 3)],
    );
    for i in 0..3 {
        assert_eq!(rig.byte(STATUS + i), S_IOERR);
    }
}

#[test]
fn read_only_buffer_where_write_only_is_required() {
    let mut rig = Rig::new(false);
    hostile(
        &mut rig,
        32,
        |rig, d| {
            rig.header(HDR, T_IN, 0);
            rig.header(HDR + 0x100, T_GET_ID, 0);
            vec![
                // IN data in a device-readable buffer.
                d.chain(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]),
                // GET_ID answer in a device-readable buffer.
                d.chain(&[(HDR + 0x100, 16, R), (DATA, 20, R), (STATUS + 1, 1, W)]),
                // A device-readable descriptor after a device-writable one.
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (DATA + 0x1000, 16, R), (STATUS + 2, 1, W)]),
                // The status descriptor device-readable: nothing can be
                // reported, so nothing is done.
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (STATUS + 3, 1, R)]),
                // A zero-length status descriptor.
                d.chain(&[(HDR, 16, R), (DATA, 512, W), (STATUS + 4, 0, W)]),
            ]
        },
        &[1, 1, 1, 0, 0],
        &[(STATUS, 3)],
    );
    for i in 0..3 {
        assert_eq!(rig.byte(STATUS + i), S_IOERR);
    }
}

#[test]
fn indirect_table_inside_an_indirect_table_is_consumed_unused() {
    let mut rig = Rig::new(false);
    rig.header(HDR, T_IN, 0);
    hostile(
        &mut rig,
        16,
        |_, d| {
            d.indirect_table(0x41000, &[(DATA, 512, W), (STATUS, 1, W)]);
            d.indirect_table(0x40000, &[(HDR, 16, R), (0x41000, 32, INDIRECT)]);
            // And one nested at the head of the table.
            d.indirect_table(0x42000, &[(0x41000, 32, INDIRECT)]);
            // Malformed tables: length not a multiple of 16, and empty.
            d.indirect_table(0x43000, &[(HDR, 16, R), (STATUS + 1, 1, W)]);
            vec![
                d.chain(&[(0x40000, 32, INDIRECT)]),
                d.chain(&[(0x42000, 16, INDIRECT)]),
                d.chain(&[(0x43000, 24, INDIRECT)]),
                d.chain(&[(0x43000, 0, INDIRECT)]),
            ]
        },
        &[0, 0, 0, 0],
        &[],
    );
}

#[test]
fn request_header_shorter_than_16_bytes() {
    let mut rig = Rig::new(false);
    hostile(
        &mut rig,
        16,
        |rig, d| {
            rig.header(HDR, T_IN, 0);
            vec![
                d.chain(&[(HDR, 8, R), (STATUS, 1, W)]),
                d.chain(&[(HDR, 8, R), (HDR + 8, 7, R), (DATA, 512, W), (STATUS + 1, 1, W)]),
                d.chain(&[(STATUS + 2, 1, W)]),
            ]
        },
        &[1, 1, 1],
        &[(STATUS, 3)],
    );
    for i in 0..3 {
        assert_eq!(rig.byte(STATUS + i), S_IOERR);
    }
}

#[test]
fn ring_protocol_violations_are_device_errors() {
    // A head index outside the queue cannot be returned through the used
    // ring.
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    d.publish(16);
    rig.activate(&d, 0);
    assert!(matches!(rig.block.process_queue(0), Err(DeviceError::Queue(_))));

    // The available index running more than a queue size ahead.
    let mut rig = Rig::new(false);
    let mem = rig.mem.clone();
    let mut d = Driver::new(&mem, 16);
    d.set_avail_idx(17);
    rig.activate(&d, 0);
    assert!(matches!(rig.block.process_queue(0), Err(DeviceError::Queue(_))));
    assert_eq!(rig.irq.count(), 0);
}

#[test]
fn access_permissions_of_translated_memory_are_honoured() {
    // The device may read [DATA, DATA + 0x1000) but not write it.
    let rig = Rig::new(false);
    let mem = rig.mem.clone();
    let protected = Arc::new(WriteProtected { inner: mem.clone(), window: (DATA, DATA + 0x1000) });
    let mut block = Block::<WriteProtected>::new(BlockConfig {
        file: rig.file.as_file().try_clone().unwrap(),
        read_only: false,
        id: "p".into(),
    })
    .unwrap();
    rig.header(HDR, T_IN, 0);
    rig.header(HDR + 0x100, T_OUT, 1);
    rig.header(HDR + 0x200, T_GET_ID, 0);
    let mut d = Driver::new(&mem, 16);
    let heads = [
        // IN into the read-only window: refused.
        d.chain(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]),
        // OUT from it: fine.
        d.chain(&[(HDR + 0x100, 16, R), (DATA, 512, R), (STATUS + 1, 1, W)]),
        // GET_ID into it: refused.
        d.chain(&[(HDR + 0x200, 16, R), (DATA + 0x100, 20, W), (STATUS + 2, 1, W)]),
        // The status byte inside it: nothing can be reported, nothing done.
        d.chain(&[(HDR, 16, R), (DATA + 0x2000, 512, W), (DATA + 0x800, 1, W)]),
    ];
    for h in heads {
        d.publish(h);
    }
    let check = MemCheck::new(&mem);
    block
        .activate(Activation {
            mem: protected,
            queues: vec![d.queue()],
            acked_features: VIRTIO_F_VERSION_1,
            interrupt: rig.irq.clone(),
        })
        .unwrap();
    block.process_queue(0).unwrap();
    assert_eq!(d.used(0), (u32::from(heads[0]), 1));
    assert_eq!(d.used(1), (u32::from(heads[1]), 1));
    assert_eq!(d.used(2), (u32::from(heads[2]), 1));
    assert_eq!(d.used(3), (u32::from(heads[3]), 0));
    assert_eq!([rig.byte(STATUS), rig.byte(STATUS + 1), rig.byte(STATUS + 2)], [S_IOERR, S_OK, S_IOERR]);
    check.assert_only_changed(&mem, &[used_ring(16), (STATUS, 3)]);
    let mut expected = disk_content();
    expected[512..1024].copy_from_slice(&rig.bytes(DATA, 512));
    assert_eq!(rig.file(), expected);
}

// ------------------------------------------------------ restricted DMA pool

#[test]
fn chains_reaching_outside_a_restricted_pool_fail_and_touch_nothing() {
    use crate::virtio::pool_memory::{pool_memory, PoolBounds, PoolCounters, PoolMemory};
    // The pool holds the rings, the headers, the data buffers and the
    // status bytes, and ends 0x800 into the data area.
    const POOL_END: u64 = DATA + 0x800;
    let mem = memory();
    let counters = Arc::new(PoolCounters::default());
    let bounds = PoolBounds::new(0, POOL_END, counters.clone(), "disk0").unwrap();
    let pooled: Arc<PoolMemory> = Arc::new(pool_memory((*mem).clone(), bounds));
    let file = TempFile::new().unwrap();
    file.as_file().write_all(&disk_content()).unwrap();
    let config = BlockConfig { file: file.as_file().try_clone().unwrap(), read_only: false, id: "d".into() };
    let mut block = Block::<PoolMemory>::new(config).unwrap();
    let header = |addr: u64, kind: u32| {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        mem.write_slice(&h, GuestAddress(addr)).unwrap();
    };
    header(HDR, T_IN);
    header(HDR + 0x100, T_OUT);
    header(POOL_END + 0x1000, T_IN);
    // STATUS lies above the pool's end: status bytes and data inside it.
    let (st, data) = (DATA + 0x400, DATA);
    let mut d = Driver::new(&mem, 32);
    let heads = vec![
        // IN into a buffer straddling the pool's end: nothing of the part
        // inside may be written either.
        d.chain(&[(HDR, 16, R), (POOL_END - 256, 512, W), (st, 1, W)]),
        // IN into a buffer wholly outside the pool (inside guest memory).
        d.chain(&[(HDR, 16, R), (POOL_END + 0x2000, 512, W), (st + 1, 1, W)]),
        // OUT from a buffer straddling the pool's end.
        d.chain(&[(HDR + 0x100, 16, R), (POOL_END - 256, 512, R), (st + 2, 1, W)]),
        // A header outside the pool.
        d.chain(&[(POOL_END + 0x1000, 16, R), (st + 3, 1, W)]),
        // A status byte outside the pool: nothing is done or written.
        d.chain(&[(HDR, 16, R), (data, 512, W), (POOL_END + 0x100, 1, W)]),
        // A request wholly inside the pool works.
        d.chain(&[(HDR, 16, R), (data, 512, W), (st + 4, 1, W)]),
    ];
    for &h in &heads {
        d.publish(h);
    }
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    block
        .activate(Activation {
            mem: pooled.clone(),
            queues: vec![d.queue()],
            acked_features: VIRTIO_F_VERSION_1,
            interrupt: irq,
        })
        .unwrap();
    block.process_queue(0).unwrap();
    assert_eq!(d.used_idx() as usize, heads.len());
    for (i, (&h, len)) in heads.iter().zip([1, 1, 1, 1, 0, 513]).enumerate() {
        assert_eq!(d.used(i as u16), (u32::from(h), len), "chain {i} (head {h})");
    }
    for i in 0..4 {
        assert_eq!(mem.read_obj::<u8>(GuestAddress(st + i)).unwrap(), S_IOERR, "chain {i}");
    }
    assert_eq!(mem.read_obj::<u8>(GuestAddress(st + 4)).unwrap(), S_OK);
    let mut read = vec![0u8; 512];
    mem.read_slice(&mut read, GuestAddress(data)).unwrap();
    assert_eq!(read, disk_content()[..512]);
    check.assert_only_changed(&mem, &[(st, 5), (data, 512), d.used_ring()]);
    let mut on_disk = Vec::new();
    let mut f = file.as_file();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk, disk_content(), "host file changed");
    assert!(counters.refused() >= 5, "{} refused", counters.refused());
    assert!(counters.inside() > 0);
}
