//! The devices crate's virtio-blk on an endpoint's translated memory: rings,
//! header, data and status all at IOVAs the driver mapped through the
//! virtio-iommu request queue.

use std::io::Write;
use std::sync::Arc;

use dmavm_devices::virtio::{
    Activation, Block, BlockConfig, InterruptKind, VirtioDevice, VIRTIO_F_VERSION_1,
};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::tempfile::TempFile;

use dmavm_devices::test_utils::interrupts::Interrupts;

use crate::request::*;
use crate::test_utils::*;
use crate::{translated_memory, TranslatedMemory};

const S_OK: u8 = Status::Ok as u8;
const ENDPOINT: u32 = 0x10;

/// IOVA → guest-physical, and the mapping's permission.
const RINGS: (u64, u64) = (0x8000_0000, 0x10_0000);
const HEADER: (u64, u64) = (0x8001_0000, 0x11_0000);
const DATA_BUF: (u64, u64) = (0x8002_0000, 0x12_0000);
const STATUS: (u64, u64) = (0x8002_1000, 0x12_1000);

const SECTORS: usize = 16;

fn disk_byte(i: usize) -> u8 {
    (i * 7 % 253) as u8
}

struct Rig {
    h: Harness,
    _file: TempFile,
    block: Block<TranslatedMemory>,
    vq: Vq,
    irq: Arc<Interrupts>,
}

/// A read-only disk behind endpoint 0x10, attached to domain 1 with the
/// rings mapped read-write, the header page read-only and the data and
/// status pages write-only: every access the device makes must carry the
/// right permission.
fn rig() -> Rig {
    let mut h = Harness::new(&[ENDPOINT]);
    h.post_event_buffers(4);
    assert_eq!(h.status(&attach_req(1, ENDPOINT, 0)), S_OK);
    let rw = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
    for ((iova, phys), len, flags) in [
        (RINGS, 0x3000, rw),
        (HEADER, 0x1000, VIRTIO_IOMMU_MAP_F_READ),
        (DATA_BUF, 0x1000, VIRTIO_IOMMU_MAP_F_WRITE),
        (STATUS, 0x1000, VIRTIO_IOMMU_MAP_F_WRITE),
    ] {
        assert_eq!(h.status(&map_req(1, iova, iova + len - 1, phys, flags)), S_OK);
    }
    let file = TempFile::new().unwrap();
    let content: Vec<u8> = (0..SECTORS * 512).map(disk_byte).collect();
    file.as_file().write_all(&content).unwrap();
    let block = Block::new(BlockConfig {
        file: file.as_file().try_clone().unwrap(),
        read_only: true,
        id: "iommu-disk".into(),
    })
    .unwrap();
    let vq = Vq::at(&h.mem, 16, RINGS.1, RINGS.0);
    Rig { h, _file: file, block, vq, irq: Arc::new(Interrupts::default()) }
}

impl Rig {
    fn activate(&mut self) {
        let tm = translated_memory((*self.h.mem).clone(), self.h.dev.endpoint(ENDPOINT).unwrap());
        self.block
            .activate(Activation {
                mem: Arc::new(tm),
                queues: vec![self.vq.queue()],
                acked_features: VIRTIO_F_VERSION_1,
                interrupt: self.irq.clone(),
            })
            .unwrap();
    }

    /// Publishes an `IN` of one sector with its data buffer at `data_iova`.
    fn read_sector(&mut self, sector: u64, data_iova: u64) -> u16 {
        let mem = self.h.mem.clone();
        let mut header = [0u8; 16];
        header[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&header, GuestAddress(HEADER.1)).unwrap();
        let head = self.vq.chain(&mem, &[(HEADER.0, 16, R), (data_iova, 512, W), (STATUS.0, 1, W)]);
        self.vq.publish(&mem, head);
        head
    }
}

#[test]
fn virtio_blk_reads_a_sector_through_the_iommu() {
    let mut r = rig();
    let head = r.read_sector(3, DATA_BUF.0);
    let check = MemCheck::new(&r.h.mem);
    r.activate();
    r.block.process_queue(0).unwrap();
    let mem = r.h.mem.clone();
    assert_eq!(r.vq.take_used(&mem), vec![(u32::from(head), 513)]);
    let expected: Vec<u8> = (3 * 512..4 * 512).map(disk_byte).collect();
    assert_eq!(bytes(&mem, DATA_BUF.1, 512), expected);
    assert_eq!(bytes(&mem, STATUS.1, 1), [0]);
    check.assert_only_changed(&mem, &[r.vq.used_ring(), r.vq.avail_ring(), (DATA_BUF.1, 512), (STATUS.1, 1)]);
    assert_eq!(r.irq.take(), vec![InterruptKind::Queue(0)]);
    // Nothing faulted; the IOTLB, filled by the MAPs, served every
    // translation.
    assert!(r.h.events().is_empty());
    let s = r.h.dev.stats()[0];
    assert_eq!((s.endpoint, s.domain, s.faults), (ENDPOINT, Some(1), 0));
    assert!(s.translations >= 6 && s.iotlb_misses == 0, "{s:?}");
}

#[test]
fn virtio_blk_data_buffer_outside_the_mappings_faults() {
    let mut r = rig();
    // The data buffer at an IOVA nobody mapped: I/O error, a fault report,
    // and not a byte of guest memory written but the status.
    let head = r.read_sector(3, 0x9000_0000);
    let check = MemCheck::new(&r.h.mem);
    r.activate();
    r.block.process_queue(0).unwrap();
    let mem = r.h.mem.clone();
    assert_eq!(r.vq.take_used(&mem), vec![(u32::from(head), 1)]);
    assert_eq!(bytes(&mem, STATUS.1, 1), [1], "VIRTIO_BLK_S_IOERR");
    // The fault report went into the IOMMU's event queue.
    let events = [r.h.evt.used_ring(), (EVENT_BUFS, 4 * 0x40)];
    check.assert_only_changed(
        &mem,
        &[&[r.vq.used_ring(), r.vq.avail_ring(), (STATUS.1, 1)], &events[..]].concat(),
    );
    let flags = VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS;
    assert_eq!(r.h.events(), vec![fault_bytes(VIRTIO_IOMMU_FAULT_R_MAPPING, flags, ENDPOINT, 0x9000_0000)]);
    assert_eq!(r.h.dev.stats()[0].faults, 1);
}
