//! The transport as Linux's virtio_pci_modern driver sees it: probing the
//! capabilities, the init sequence through the common configuration, MSI-X
//! and notifications; and hostile accesses.

use std::collections::BTreeMap;
use std::sync::Mutex;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::bus::Bus;
use crate::interrupt::{InterruptError, MsiMessage};
use crate::pci::{
    BarListener, PciEcam, PciRoot, PciWindows, COMMAND_MEMORY, MSIX_CONTROL_ENABLE,
    MSIX_CONTROL_FUNCTION_MASK, PCI_CAPABILITY_LIST, PCI_STATUS, STATUS_CAP_LIST,
};
use crate::test_utils::recording_device::{rings, seen, MockDevice, Record};
use crate::test_utils::xorshift::Xorshift;
use crate::virtio::device::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use crate::virtio::dma_access::VIRTIO_F_ACCESS_PLATFORM;
use crate::virtio::transport::status;

type Mem = GuestMemoryMmap<()>;

const MEM_SIZE: u64 = 0x10_0000;
const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | 0x5;

#[derive(Default)]
struct Msis(Mutex<Vec<(u16, MsiMessage)>>);

impl MsixBackend for Msis {
    fn deliver(&self, vector: u16, msg: MsiMessage) -> Result<(), InterruptError> {
        self.0.lock().unwrap().push((vector, msg));
        Ok(())
    }
}

impl Msis {
    fn take(&self) -> Vec<u16> {
        std::mem::take(&mut *self.0.lock().unwrap()).into_iter().map(|(v, _)| v).collect()
    }
}

struct Fixture {
    t: VirtioPciTransport<Mem>,
    record: Arc<Mutex<Record>>,
    msis: Arc<Msis>,
}

fn fixture_with(device_type: u32, features: u64, sizes: Vec<u16>, dma_access: DmaAccess) -> Fixture {
    let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap());
    let record = Arc::new(Mutex::new(Record::default()));
    let device = MockDevice { device_type, features, sizes, record: record.clone() };
    let msis = Arc::new(Msis::default());
    let t = VirtioPciTransport::new(Box::new(device), mem, msis.clone(), dma_access).unwrap();
    Fixture { t, record, msis }
}

fn fixture() -> Fixture {
    fixture_with(4, FEATURES, vec![256, 16], DmaAccess::GuestPhysical)
}

// Configuration space accessors.
fn cr(t: &mut VirtioPciTransport<Mem>, offset: u16, len: usize) -> u32 {
    let mut b = [0; 4];
    t.read_config(offset, &mut b[..len]);
    u32::from_le_bytes(b)
}

fn cw(t: &mut VirtioPciTransport<Mem>, offset: u16, len: usize, v: u32) {
    t.write_config(offset, &v.to_le_bytes()[..len]);
}

// BAR accessors.
fn br(t: &mut VirtioPciTransport<Mem>, offset: u64, len: usize) -> u64 {
    let mut b = [0xee; 8];
    t.read_bar(0, offset, &mut b[..len]);
    let mut v = [0; 8];
    v[..len].copy_from_slice(&b[..len]);
    u64::from_le_bytes(v)
}

fn bw(t: &mut VirtioPciTransport<Mem>, offset: u64, len: usize, v: u64) {
    t.write_bar(0, offset, &v.to_le_bytes()[..len]);
}

/// What Linux's virtio_pci_modern_probe and pci_msix_* learn from the
/// capabilities: cfg_type to (bar, offset, length, capability position).
struct Probe {
    caps: BTreeMap<u8, (u8, u32, u32, u16)>,
    notify_multiplier: u32,
    msix: (u16, u16, u32, u32),
}

/// Walks the capability list as virtio_pci_find_capability does and checks
/// every structure as vp_modern_map_capability does.
fn probe(t: &mut VirtioPciTransport<Mem>) -> Probe {
    assert_ne!(cr(t, PCI_STATUS, 2) & u32::from(STATUS_CAP_LIST), 0);
    let bar_size = t.bars()[0].size;
    let mut caps = BTreeMap::new();
    let mut msix = None;
    let mut pos = cr(t, PCI_CAPABILITY_LIST, 1) as u16;
    let mut ttl = 48;
    while pos >= 0x40 && ttl > 0 {
        pos &= !3;
        let id = cr(t, pos, 1) as u8;
        if id == PCI_CAP_ID_VNDR {
            let cfg = cr(t, pos + 3, 1) as u8;
            let bar = cr(t, pos + 4, 1) as u8;
            let offset = cr(t, pos + 8, 4);
            let length = cr(t, pos + 12, 4);
            assert!(cr(t, pos + 2, 1) >= 16);
            caps.entry(cfg).or_insert((bar, offset, length, pos));
        } else if id == PCI_CAP_ID_MSIX {
            let control = cr(t, pos + 2, 2) as u16;
            let table = cr(t, pos + 4, 4);
            let pba = cr(t, pos + 8, 4);
            msix = Some(((control & 0x7ff) + 1, pos, table, pba));
        }
        pos = cr(t, pos + 1, 1) as u16;
        ttl -= 1;
    }
    // (minimum length, alignment) per vp_modern_probe.
    let rules = [
        (cfg_type::COMMON, 0x38, 4),
        (cfg_type::NOTIFY, 2, 2),
        (cfg_type::ISR, 1, 1),
        (cfg_type::DEVICE, 0, 4),
    ];
    for (cfg, minlen, align) in rules {
        let &(bar, offset, length, _) = caps.get(&cfg).unwrap_or_else(|| panic!("no cfg_type {cfg}"));
        assert_eq!(bar, 0, "cfg_type {cfg}");
        assert!(length >= minlen && length > 0, "cfg_type {cfg}");
        assert_eq!(offset % align, 0);
        assert!(u64::from(offset) + u64::from(length) <= bar_size, "cfg_type {cfg}");
    }
    assert!(caps.contains_key(&cfg_type::PCI));
    let notify_pos = caps[&cfg_type::NOTIFY].3;
    assert_eq!(cr(t, notify_pos + 2, 1), 20);
    let notify_multiplier = cr(t, notify_pos + 16, 4);
    let msix = msix.expect("MSI-X capability");
    let (count, _, table, pba) = msix;
    assert_eq!(table & 7, 0);
    assert_eq!(pba & 7, 0);
    assert!(u64::from(table) + u64::from(count) * 16 <= bar_size);
    assert!(u64::from(pba) + u64::from(count).div_ceil(64) * 8 <= bar_size);
    Probe { caps, notify_multiplier, msix }
}

fn common(offset: u64) -> u64 {
    COMMON_CFG_OFFSET + offset
}

/// Linux's probe up to the FEATURES_OK read-back.
fn negotiate(t: &mut VirtioPciTransport<Mem>, accept: impl Fn(u64) -> u64) -> bool {
    bw(t, common(DEVICE_STATUS), 1, 0);
    assert_eq!(br(t, common(DEVICE_STATUS), 1), 0);
    bw(t, common(DEVICE_STATUS), 1, u64::from(status::ACKNOWLEDGE));
    bw(t, common(DEVICE_STATUS), 1, u64::from(status::ACKNOWLEDGE | status::DRIVER));
    bw(t, common(DEVICE_FEATURE_SELECT), 4, 0);
    let mut offered = br(t, common(DEVICE_FEATURE), 4);
    bw(t, common(DEVICE_FEATURE_SELECT), 4, 1);
    offered |= br(t, common(DEVICE_FEATURE), 4) << 32;
    let acked = accept(offered);
    bw(t, common(DRIVER_FEATURE_SELECT), 4, 0);
    bw(t, common(DRIVER_FEATURE), 4, acked & 0xffff_ffff);
    bw(t, common(DRIVER_FEATURE_SELECT), 4, 1);
    bw(t, common(DRIVER_FEATURE), 4, acked >> 32);
    bw(t, common(DEVICE_STATUS), 1, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK));
    br(t, common(DEVICE_STATUS), 1) & u64::from(status::FEATURES_OK) != 0
}

fn msi(vector: u64) -> MsiMessage {
    MsiMessage { address: 0xfee0_0000 | (vector << 12), data: 0x4030 + vector as u32 }
}

/// pci_msix_enable: enable with the function masked, program every entry
/// unmasked, clear the function mask.
fn enable_msix(t: &mut VirtioPciTransport<Mem>) {
    let p = probe(t);
    let (count, pos, table, _) = p.msix;
    cw(t, pos + 2, 2, u32::from(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK));
    for v in 0..u64::from(count) {
        let e = u64::from(table) + v * 16;
        let m = msi(v);
        bw(t, e, 4, m.address & 0xffff_ffff);
        bw(t, e + 4, 4, m.address >> 32);
        bw(t, e + 8, 4, u64::from(m.data));
        bw(t, e + 12, 4, 0);
    }
    cw(t, pos + 2, 2, u32::from(MSIX_CONTROL_ENABLE));
}

/// setup_vq in virtio_pci_modern.c; returns the notify offset in the BAR.
fn setup_queue(t: &mut VirtioPciTransport<Mem>, i: u16, size: u16, vector: u16) -> u64 {
    bw(t, common(QUEUE_SELECT), 2, u64::from(i));
    let max = br(t, common(QUEUE_SIZE), 2) as u16;
    assert!(max >= size);
    assert_eq!(br(t, common(QUEUE_ENABLE), 2), 0);
    bw(t, common(QUEUE_SIZE), 2, u64::from(size));
    let (desc, avail, used) = rings(u64::from(i));
    for (field, addr) in [(QUEUE_DESC, desc), (QUEUE_DRIVER, avail), (QUEUE_DEVICE, used)] {
        // vp_iowrite64_twopart: low, then high.
        bw(t, common(field), 4, addr & 0xffff_ffff);
        bw(t, common(field + 4), 4, addr >> 32);
    }
    let notify_off = br(t, common(QUEUE_NOTIFY_OFF), 2);
    bw(t, common(QUEUE_MSIX_VECTOR), 2, u64::from(vector));
    assert_eq!(br(t, common(QUEUE_MSIX_VECTOR), 2), u64::from(vector));
    NOTIFY_CFG_OFFSET + notify_off * u64::from(NOTIFY_OFF_MULTIPLIER)
}

/// The whole init sequence with per-queue vectors (config 0, queue n on
/// n + 1), accepting every offered feature.
fn bring_up(t: &mut VirtioPciTransport<Mem>) {
    assert!(negotiate(t, |f| f));
    enable_msix(t);
    bw(t, common(CONFIG_MSIX_VECTOR), 2, 0);
    assert_eq!(br(t, common(CONFIG_MSIX_VECTOR), 2), 0);
    setup_queue(t, 0, 128, 1);
    setup_queue(t, 1, 16, 2);
    for i in 0..2 {
        bw(t, common(QUEUE_SELECT), 2, i);
        bw(t, common(QUEUE_ENABLE), 2, 1);
    }
    bw(t, common(DEVICE_STATUS), 1, 0xf);
}

fn interrupt(record: &Arc<Mutex<Record>>) -> Arc<dyn VirtioInterrupt> {
    record.lock().unwrap().interrupt.clone().unwrap()
}

#[test]
fn identification_and_header() {
    for (device_type, class) in [(2, 0x010000), (4, 0xff0000), (3, 0x078000), (1, 0x020000), (23, 0xff0000)] {
        let Fixture { mut t, .. } = fixture_with(device_type, FEATURES, vec![8], DmaAccess::GuestPhysical);
        let device_id = 0x1040 + device_type;
        assert_eq!(cr(&mut t, 0, 4), 0x1af4 | (device_id << 16));
        assert_eq!(cr(&mut t, 8, 4), (class << 8) | 1);
        assert_eq!(cr(&mut t, 0x2c, 4), 0x1af4 | (device_id << 16));
        assert_eq!(cr(&mut t, 0x0e, 1), 0, "type 0, single function");
        assert_eq!(cr(&mut t, 0x3d, 1), 0, "no INTx pin");
        assert_eq!(t.device_type(), device_type);
    }
    let Fixture { mut t, .. } = fixture();
    // BAR 0: 64-bit, non-prefetchable; nothing else.
    assert_eq!(cr(&mut t, 0x10, 4), 0x4);
    assert_eq!(
        t.bars(),
        vec![PciBar { index: 0, size: 0x8000, kind: BarKind::Memory64, prefetchable: false }]
    );
    assert_eq!(t.bar_size(), 0x8000);
    cw(&mut t, 0x10, 4, 0xffff_ffff);
    cw(&mut t, 0x14, 4, 0xffff_ffff);
    assert_eq!(cr(&mut t, 0x10, 4), 0xffff_8004);
    assert_eq!(cr(&mut t, 0x14, 4), 0xffff_ffff);
    for reg in [0x18, 0x1c, 0x20, 0x24, 0x30] {
        cw(&mut t, reg, 4, 0xffff_ffff);
        assert_eq!(cr(&mut t, reg, 4), 0, "{reg:#x}");
    }
    assert_eq!(t.msix_vectors(), 3);
    assert_eq!(t.label(), "virtio-rng");
    assert_eq!(t.with_label("rng0").label(), "rng0");
}

#[test]
fn capabilities_walk_like_linux() {
    let Fixture { mut t, .. } = fixture();
    let p = probe(&mut t);
    assert_eq!(p.caps[&cfg_type::COMMON].1 as u64, COMMON_CFG_OFFSET);
    assert_eq!(p.caps[&cfg_type::ISR].1 as u64, ISR_CFG_OFFSET);
    assert_eq!(p.caps[&cfg_type::DEVICE].1 as u64, DEVICE_CFG_OFFSET);
    assert_eq!(p.caps[&cfg_type::NOTIFY].1 as u64, NOTIFY_CFG_OFFSET);
    assert_eq!(p.notify_multiplier, NOTIFY_OFF_MULTIPLIER);
    assert_eq!(p.msix.0, 3);
    // Capabilities are read-only except where the spec says otherwise.
    let pos = p.caps[&cfg_type::COMMON].3;
    let before: Vec<u32> = (0..4).map(|i| cr(&mut t, pos + 4 * i, 4)).collect();
    for i in 0..4 {
        cw(&mut t, pos + 4 * i, 4, 0xffff_ffff);
    }
    let after: Vec<u32> = (0..4).map(|i| cr(&mut t, pos + 4 * i, 4)).collect();
    assert_eq!(before, after);
    // MSI-X: table size read-only, enable and function mask writable.
    cw(&mut t, p.msix.1 + 2, 2, 0xffff);
    assert_eq!(cr(&mut t, p.msix.1 + 2, 2), 0xc002);
    // A device with many queues gets a bigger notify region and table
    // (checked on the layout: 1500 eventfds would exceed the usual fd
    // limit).
    let msix = MsixVectors::new(1501, Arc::new(Msis::default())).unwrap();
    let l = Layout::new(1500, &msix);
    assert!(l.notify_size >= 1500 * 4);
    assert!(l.table >= NOTIFY_CFG_OFFSET + l.notify_size);
    assert!(l.table_size >= 1501 * 16);
    assert!(l.pba >= l.table + l.table_size && l.pba_size >= 1501u64.div_ceil(64) * 8);
    assert!(l.bar_size.is_power_of_two() && l.bar_size >= l.pba + l.pba_size);
    assert_eq!(l.region(NOTIFY_CFG_OFFSET + 1499 * 4, 2), Some((Region::Notify, 1499 * 4)));
    assert_eq!(l.region(l.table + 1500 * 16, 16), Some((Region::MsixTable, 1500 * 16)));
    assert_eq!(l.region(l.table - 2, 4), None);
    assert_eq!(l.region(u64::MAX, 2), None);
}

#[test]
fn linux_init_sequence_activates_device() {
    let Fixture { mut t, record, .. } = fixture();
    assert_eq!(br(&mut t, common(NUM_QUEUES), 2), 2);
    bring_up(&mut t);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf);
    assert!(t.is_activated());
    assert_eq!(t.device_status(), 0xf);
    let rec = record.lock().unwrap();
    assert_eq!(rec.activations.len(), 1);
    let (queues, features) = &rec.activations[0];
    assert_eq!(*features, FEATURES);
    assert_eq!(queues, &vec![seen(0, 128, true), seen(1, 16, true)]);
    drop(rec);
    // The driver features read back; queue registers read back.
    bw(&mut t, common(DRIVER_FEATURE_SELECT), 4, 1);
    assert_eq!(br(&mut t, common(DRIVER_FEATURE), 4), 1);
    bw(&mut t, common(QUEUE_SELECT), 2, 1);
    assert_eq!(br(&mut t, common(QUEUE_SIZE), 2), 16);
    assert_eq!(br(&mut t, common(QUEUE_DRIVER), 8), rings(1).1);
    assert_eq!(br(&mut t, common(QUEUE_DEVICE + 4), 4), 0);
    assert_eq!(br(&mut t, common(QUEUE_NOTIFY_OFF), 2), 1);
    // Frozen after DRIVER_OK.
    bw(&mut t, common(QUEUE_SIZE), 2, 8);
    bw(&mut t, common(QUEUE_DESC), 8, 0x5000);
    bw(&mut t, common(QUEUE_ENABLE), 2, 0);
    assert_eq!(br(&mut t, common(QUEUE_SIZE), 2), 16);
    assert_eq!(br(&mut t, common(QUEUE_DESC), 8), rings(1).0);
    assert_eq!(br(&mut t, common(QUEUE_ENABLE), 2), 1);
}

#[test]
fn queue_setup_rules() {
    let Fixture { mut t, record, .. } = fixture();
    assert!(negotiate(&mut t, |f| f & !VIRTIO_RING_F_EVENT_IDX));
    // A queue beyond num_queues has size 0 (Linux: -ENOENT).
    bw(&mut t, common(QUEUE_SELECT), 2, 2);
    assert_eq!(br(&mut t, common(QUEUE_SIZE), 2), 0);
    bw(&mut t, common(QUEUE_SIZE), 2, 8);
    bw(&mut t, common(QUEUE_ENABLE), 2, 1);
    assert_eq!(br(&mut t, common(QUEUE_ENABLE), 2), 0);
    assert_eq!(br(&mut t, common(QUEUE_MSIX_VECTOR), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    // A 64-bit write of an address works too.
    bw(&mut t, common(QUEUE_SELECT), 2, 1);
    bw(&mut t, common(QUEUE_SIZE), 2, 8);
    let (desc, avail, used) = rings(1);
    bw(&mut t, common(QUEUE_DESC), 8, desc);
    bw(&mut t, common(QUEUE_DRIVER), 8, avail);
    bw(&mut t, common(QUEUE_DEVICE), 8, used);
    bw(&mut t, common(QUEUE_ENABLE), 2, 1);
    // Enabled: frozen.
    bw(&mut t, common(QUEUE_SIZE), 2, 4);
    bw(&mut t, common(QUEUE_DESC), 4, 0x8000);
    bw(&mut t, common(DEVICE_STATUS), 1, 0xf);
    let rec = record.lock().unwrap();
    let (queues, features) = &rec.activations[0];
    assert_eq!(*features, FEATURES & !VIRTIO_RING_F_EVENT_IDX);
    assert!(!queues[0].ready);
    assert_eq!(queues[1], seen(1, 8, false));
}

#[test]
fn bad_queue_configuration_needs_reset() {
    for (size, shift) in [(100u16, 0u64), (512, 0), (64, 0x8), (64, MEM_SIZE)] {
        let Fixture { mut t, record, msis } = fixture();
        assert!(negotiate(&mut t, |f| f));
        enable_msix(&mut t);
        bw(&mut t, common(CONFIG_MSIX_VECTOR), 2, 0);
        bw(&mut t, common(QUEUE_SELECT), 2, 0);
        bw(&mut t, common(QUEUE_SIZE), 2, u64::from(size));
        bw(&mut t, common(QUEUE_DESC), 8, 0x1_0000 + shift);
        bw(&mut t, common(QUEUE_DRIVER), 8, 0x1_1000);
        bw(&mut t, common(QUEUE_DEVICE), 8, 0x1_2000);
        bw(&mut t, common(QUEUE_ENABLE), 2, 1);
        bw(&mut t, common(DEVICE_STATUS), 1, 0xf);
        assert!(record.lock().unwrap().activations.is_empty(), "size {size} shift {shift:#x}");
        assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf | u64::from(status::DEVICE_NEEDS_RESET));
        assert_eq!(msis.take(), vec![0], "configuration vector");
        assert_eq!(br(&mut t, ISR_CFG_OFFSET, 1), u64::from(ISR_CONFIG));
        assert!(!t.is_activated());
    }
}

#[test]
fn features_ok_refusals() {
    // Without VERSION_1.
    let Fixture { mut t, record, .. } = fixture();
    assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_VERSION_1));
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), u64::from(status::ACKNOWLEDGE | status::DRIVER));
    assert_eq!(record.lock().unwrap().resets, 2, "status 0 and the refusal");
    bw(&mut t, common(DEVICE_STATUS), 1, 0x7);
    assert!(record.lock().unwrap().activations.is_empty());
    assert_ne!(br(&mut t, common(DEVICE_STATUS), 1) & u64::from(status::DEVICE_NEEDS_RESET), 0);
    bring_up(&mut t);
    assert!(t.is_activated());
    // A feature that was not offered, in either bank or beyond.
    let Fixture { mut t, .. } = fixture();
    assert!(!negotiate(&mut t, |f| f | (1 << 20)));
    let Fixture { mut t, .. } =
        fixture_with(4, FEATURES | (1 << 34) | (1 << 38), vec![8], DmaAccess::GuestPhysical);
    assert!(!negotiate(&mut t, |f| f | (1 << 34)), "packed rings are never offered");
    assert_eq!(t.offered_features(), FEATURES);
    assert!(negotiate(&mut t, |f| f));
    bw(&mut t, common(DEVICE_STATUS), 1, 0);
    bw(&mut t, common(DEVICE_STATUS), 1, 3);
    bw(&mut t, common(DRIVER_FEATURE_SELECT), 4, 2);
    bw(&mut t, common(DRIVER_FEATURE), 4, 1);
    bw(&mut t, common(DRIVER_FEATURE_SELECT), 4, 1);
    bw(&mut t, common(DRIVER_FEATURE), 4, 1);
    bw(&mut t, common(DEVICE_STATUS), 1, 0xb);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 3);
    // Behind an IOMMU (the DMA contract): the transport offers
    // ACCESS_PLATFORM, which the device does not know, and requires it.
    let features = FEATURES | VIRTIO_F_ACCESS_PLATFORM;
    let Fixture { mut t, record, .. } = fixture_with(4, FEATURES, vec![8], DmaAccess::Translated);
    assert_eq!(t.dma_access(), DmaAccess::Translated);
    assert_eq!(t.offered_features(), features);
    assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
    assert_eq!(record.lock().unwrap().resets, 2);
    assert!(negotiate(&mut t, |f| f));
    bw(&mut t, common(DEVICE_STATUS), 1, 0xf);
    assert_eq!(record.lock().unwrap().activations[0].1, features);
    // Without one the driver may decline it.
    let Fixture { mut t, record, .. } = fixture_with(4, FEATURES, vec![8], DmaAccess::PlatformIdentity);
    assert_eq!(t.offered_features(), features);
    assert!(negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
    bw(&mut t, common(DEVICE_STATUS), 1, 0xf);
    assert_eq!(record.lock().unwrap().activations[0].1, FEATURES);
    // Direct access: never offered, even by a device that claims it.
    let Fixture { mut t, .. } = fixture_with(4, features, vec![8], DmaAccess::GuestPhysical);
    assert_eq!(t.offered_features(), FEATURES);
    assert!(!negotiate(&mut t, |f| f | VIRTIO_F_ACCESS_PLATFORM));
    // Devices that cannot work are refused up front.
    let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap());
    let make = |features: u64, sizes: Vec<u16>| {
        let device = MockDevice { device_type: 4, features, sizes, record: Arc::default() };
        VirtioPciTransport::new(
            Box::new(device),
            mem.clone(),
            Arc::new(Msis::default()),
            DmaAccess::Translated,
        )
    };
    assert!(matches!(make(1, vec![8]), Err(TransportError::NoVersion1(_))));
    assert!(matches!(make(FEATURES, vec![8, 3]), Err(TransportError::InvalidQueueMaxSize { .. })));
    assert!(matches!(make(FEATURES, vec![8; 2048]), Err(TransportError::TooManyQueues { .. })));
    assert!(make(FEATURES, vec![8; 64]).is_ok());
    assert!(make(FEATURES, vec![]).is_ok());
}

#[test]
fn reset_clears_negotiation_and_vectors_but_not_the_msix_table() {
    let Fixture { mut t, record, msis } = fixture();
    bring_up(&mut t);
    let resets = record.lock().unwrap().resets;
    bw(&mut t, common(DEVICE_STATUS), 1, 0);
    assert_eq!(record.lock().unwrap().resets, resets + 1);
    assert!(!t.is_activated());
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0);
    assert_eq!(br(&mut t, common(CONFIG_MSIX_VECTOR), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    for q in 0..2 {
        bw(&mut t, common(QUEUE_SELECT), 2, q);
        assert_eq!(br(&mut t, common(QUEUE_MSIX_VECTOR), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
        assert_eq!(br(&mut t, common(QUEUE_ENABLE), 2), 0);
    }
    assert_eq!(br(&mut t, common(QUEUE_SIZE), 2), 16, "back to the maximum");
    t.process_notification(0);
    assert!(record.lock().unwrap().processed.is_empty());
    // The MSI-X table and enable bit are PCI state: still programmed.
    let p = probe(&mut t);
    assert_eq!(cr(&mut t, p.msix.1 + 2, 2) as u16 & MSIX_CONTROL_ENABLE, MSIX_CONTROL_ENABLE);
    assert_eq!(br(&mut t, u64::from(p.msix.2) + 16 + 8, 4), u64::from(msi(1).data));
    // A second bring-up works from scratch.
    bring_up(&mut t);
    assert_eq!(record.lock().unwrap().activations.len(), 2);
    interrupt(&record).trigger(InterruptKind::Queue(1)).unwrap();
    assert_eq!(msis.take(), vec![2]);
}

#[test]
fn msix_vectors_for_queues_and_config() {
    let Fixture { mut t, record, msis } = fixture();
    bring_up(&mut t);
    let irq = interrupt(&record);
    let p = probe(&mut t);
    let (_, pos, table, pba) = p.msix;
    let (table, pba) = (u64::from(table), u64::from(pba));
    irq.trigger(InterruptKind::Queue(0)).unwrap();
    irq.trigger(InterruptKind::Queue(1)).unwrap();
    assert_eq!(msis.take(), vec![1, 2]);
    assert_eq!(msis.0.lock().unwrap().len(), 0);
    // With MSI-X the ISR queue bit is not used.
    assert_eq!(br(&mut t, ISR_CFG_OFFSET, 1), 0);
    let generation = br(&mut t, common(CONFIG_GENERATION), 1);
    irq.trigger(InterruptKind::Config).unwrap();
    assert_eq!(msis.take(), vec![0]);
    assert_eq!(br(&mut t, common(CONFIG_GENERATION), 1), (generation + 1) & 0xff);
    // ISR is read-to-clear; the config bit is set even with MSI-X.
    assert_eq!(br(&mut t, ISR_CFG_OFFSET, 1), u64::from(ISR_CONFIG));
    assert_eq!(br(&mut t, ISR_CFG_OFFSET, 1), 0);

    // Masked vector: pending, then delivered on unmask.
    bw(&mut t, table + 16 + 12, 4, 1);
    irq.trigger(InterruptKind::Queue(0)).unwrap();
    irq.trigger(InterruptKind::Queue(0)).unwrap();
    assert!(msis.take().is_empty());
    assert_eq!(br(&mut t, pba, 8), 0b10);
    bw(&mut t, table + 16 + 12, 4, 0);
    assert_eq!(msis.0.lock().unwrap().clone(), vec![(1, msi(1))]);
    msis.take();
    assert_eq!(br(&mut t, pba, 8), 0);

    // Function mask: everything pends, delivered when it is cleared.
    cw(&mut t, pos + 2, 2, u32::from(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK));
    irq.trigger(InterruptKind::Queue(1)).unwrap();
    irq.trigger(InterruptKind::Config).unwrap();
    assert!(msis.take().is_empty());
    assert_eq!(br(&mut t, pba, 4), 0b101);
    // A byte write of the high half of message control works too.
    cw(&mut t, pos + 3, 1, u32::from(MSIX_CONTROL_ENABLE >> 8));
    assert_eq!(msis.take(), vec![0, 2]);

    // Reassigning: queue 1 shares vector 1, then gets none; an impossible
    // vector reads back as none.
    bw(&mut t, common(QUEUE_SELECT), 2, 1);
    bw(&mut t, common(QUEUE_MSIX_VECTOR), 2, 1);
    irq.trigger(InterruptKind::Queue(1)).unwrap();
    assert_eq!(msis.take(), vec![1]);
    bw(&mut t, common(QUEUE_MSIX_VECTOR), 2, u64::from(VIRTIO_MSI_NO_VECTOR));
    irq.trigger(InterruptKind::Queue(1)).unwrap();
    assert!(msis.take().is_empty());
    bw(&mut t, common(QUEUE_MSIX_VECTOR), 2, 3);
    assert_eq!(br(&mut t, common(QUEUE_MSIX_VECTOR), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    bw(&mut t, common(CONFIG_MSIX_VECTOR), 2, 0x800);
    assert_eq!(br(&mut t, common(CONFIG_MSIX_VECTOR), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    irq.trigger(InterruptKind::Config).unwrap();
    assert!(msis.take().is_empty());
    // Queues the device does not have.
    irq.trigger(InterruptKind::Queue(7)).unwrap();
    assert!(msis.take().is_empty());

    // MSI-X disabled: nothing is sent, the ISR says what happened.
    br(&mut t, ISR_CFG_OFFSET, 1);
    cw(&mut t, pos + 2, 2, 0);
    irq.trigger(InterruptKind::Queue(0)).unwrap();
    assert!(msis.take().is_empty());
    assert_eq!(br(&mut t, ISR_CFG_OFFSET, 1), u64::from(ISR_QUEUE));
    assert_eq!(br(&mut t, pba, 8), 0);
}

#[test]
fn device_errors_set_needs_reset_and_interrupt() {
    let Fixture { mut t, record, msis } = fixture();
    record.lock().unwrap().fail_activate = true;
    bring_up(&mut t);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf | u64::from(status::DEVICE_NEEDS_RESET));
    assert_eq!(msis.take(), vec![0]);
    t.process_notification(0);
    assert!(record.lock().unwrap().processed.is_empty());
    record.lock().unwrap().fail_activate = false;
    bring_up(&mut t);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf);
    record.lock().unwrap().fail_process = true;
    t.process_notification(1);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf | u64::from(status::DEVICE_NEEDS_RESET));
    assert_eq!(msis.take(), vec![0]);
    // The driver cannot clear it, only reset.
    bw(&mut t, common(DEVICE_STATUS), 1, 0xf);
    assert_ne!(br(&mut t, common(DEVICE_STATUS), 1) & u64::from(status::DEVICE_NEEDS_RESET), 0);
}

#[test]
fn notify_writes_signal_the_right_eventfd() {
    let Fixture { mut t, record, .. } = fixture();
    bring_up(&mut t);
    let n0 = t.notify_offset(0).unwrap();
    let n1 = t.notify_offset(1).unwrap();
    assert_eq!((n0, n1), (NOTIFY_CFG_OFFSET, NOTIFY_CFG_OFFSET + 4));
    assert_eq!(t.notify_offset(2), None);
    // Linux writes the 16-bit queue index at the queue's address.
    bw(&mut t, n1, 2, 1);
    bw(&mut t, n1, 4, 0xdead);
    // Misaligned, another queue's index at queue 0's address is still
    // queue 0 (the address decides), and nonexistent queues.
    bw(&mut t, n0 + 2, 2, 0);
    bw(&mut t, n0 + 8, 2, 2);
    bw(&mut t, NOTIFY_CFG_OFFSET + 0xffc, 4, 0);
    assert_eq!(t.queue_events()[1].read().unwrap(), 2);
    assert_eq!(t.queue_events()[0].read().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    bw(&mut t, n0, 2, 1);
    assert_eq!(t.queue_events()[0].read().unwrap(), 1);
    // Reads of the notify region are zero; the write never ran the device.
    assert_eq!(br(&mut t, n0, 2), 0);
    assert!(record.lock().unwrap().processed.is_empty());
    t.process_notification(1);
    t.process_notification(2);
    t.process_notification(usize::MAX);
    assert_eq!(record.lock().unwrap().processed, vec![1]);
}

#[test]
fn device_config_and_narrow_common_accesses() {
    let Fixture { mut t, record, .. } = fixture();
    assert_eq!(br(&mut t, DEVICE_CFG_OFFSET + 3, 1), 0xa3);
    assert_eq!(br(&mut t, DEVICE_CFG_OFFSET + 0x10, 8), 0xb7b6_b5b4_b3b2_b1b0);
    bw(&mut t, DEVICE_CFG_OFFSET + 2, 2, 0x0201);
    // Straddling the end of a region: neither read nor forwarded.
    assert_eq!(br(&mut t, DEVICE_CFG_OFFSET + 0xffe, 4), 0);
    bw(&mut t, DEVICE_CFG_OFFSET + 0xffe, 4, 0);
    assert_eq!(record.lock().unwrap().config_writes, vec![(2, vec![1, 2])]);
    // Common fields only at their width.
    assert_eq!(br(&mut t, common(NUM_QUEUES), 4), 0);
    assert_eq!(br(&mut t, common(NUM_QUEUES), 1), 0);
    assert_eq!(br(&mut t, common(DEVICE_FEATURE + 1), 2), 0);
    bw(&mut t, common(DEVICE_STATUS), 2, 0x1);
    bw(&mut t, common(DEVICE_STATUS), 4, 0x1);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0);
    bw(&mut t, common(DEVICE_STATUS), 1, 0x1);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 1);
    // Fields the transport does not implement read as zero.
    for off in [0x38, 0x3a, 0x3c, 0x3e] {
        assert_eq!(br(&mut t, common(off), 2), 0);
    }
    assert_eq!(br(&mut t, common(0x40), 4), 0);
    // Other BARs do not exist.
    let mut b = [0xff; 4];
    t.read_bar(2, 0, &mut b);
    assert_eq!(b, [0; 4]);
    t.write_bar(2, common(DEVICE_STATUS), &[0]);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 1);
}

#[test]
fn pci_configuration_access_capability() {
    let Fixture { mut t, .. } = fixture();
    let p = probe(&mut t);
    let cap = p.caps[&cfg_type::PCI].3;
    let set = |t: &mut VirtioPciTransport<Mem>, bar: u32, offset: u64, length: u32| {
        cw(t, cap + 4, 1, bar);
        cw(t, cap + 8, 4, offset as u32);
        cw(t, cap + 12, 4, length);
    };
    // Read and write device_status through the window.
    set(&mut t, 0, common(DEVICE_STATUS), 1);
    cw(&mut t, cap + 16, 1, status::ACKNOWLEDGE);
    assert_eq!(cr(&mut t, cap + 16, 4), status::ACKNOWLEDGE);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), u64::from(status::ACKNOWLEDGE));
    // num_queues, a word.
    set(&mut t, 0, common(NUM_QUEUES), 2);
    assert_eq!(cr(&mut t, cap + 16, 2), 2);
    // A notification through the window.
    let notify = t.notify_offset(1).unwrap();
    set(&mut t, 0, notify, 2);
    cw(&mut t, cap + 16, 2, 1);
    assert_eq!(t.queue_events()[1].read().unwrap(), 1);
    // Invalid windows are inert: bad length, misaligned, outside the BAR,
    // another BAR.
    for (bar, offset, length) in [(0, 0, 3), (0, 2, 4), (0, 0x8000, 1), (0, 0x7ffe, 4), (1, 0, 4), (0, 0, 0)]
    {
        set(&mut t, bar, offset, length);
        cw(&mut t, cap + 16, 4, 0);
        cr(&mut t, cap + 16, 4);
    }
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), u64::from(status::ACKNOWLEDGE));
    // The rest of the capability stays read-only.
    cw(&mut t, cap, 4, 0);
    assert_eq!(cr(&mut t, cap, 1), u32::from(PCI_CAP_ID_VNDR));
    assert_eq!(cr(&mut t, cap + 2, 2), 20 | (u32::from(cfg_type::PCI) << 8));
}

/// A root bus, ECAM and the MMIO bus around one transport: BAR placement,
/// accesses through the bus, relocation.
#[test]
fn behind_the_root_bus() {
    type Move = (u8, u8, Option<u64>, Option<u64>);
    #[derive(Default)]
    struct Moves(Mutex<Vec<Move>>);
    impl BarListener for Moves {
        fn bar_moved(&self, slot: u8, bar: u8, old: Option<u64>, new: Option<u64>) {
            self.0.lock().unwrap().push((slot, bar, old, new));
        }
    }
    let Fixture { t, record, msis } = fixture();
    let mmio = Arc::new(Bus::new());
    let windows = PciWindows { mem32: 0xc000_0000..0xd000_0000, mem64: Some(0x1_0000_0000..0x2_0000_0000) };
    let mut root = PciRoot::new(mmio.clone(), windows).unwrap();
    let moves = Arc::new(Moves::default());
    root.set_bar_listener(moves.clone());
    let t = Arc::new(Mutex::new(t));
    assert_eq!(root.add_device(t.clone()).unwrap(), 1);
    let base = 0x1_0000_0000;
    assert_eq!(*moves.0.lock().unwrap(), vec![(1, 0, None, Some(base))]);
    let root = Arc::new(Mutex::new(root));
    let mut ecam = PciEcam::new(root.clone(), 1);
    use crate::bus::BusDevice;
    let mut b = [0; 4];
    ecam.read(1 << 15, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1044_1af4);
    // Through the MMIO bus.
    mmio.read(base + common(NUM_QUEUES), &mut b[..2]).unwrap();
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), 2);
    mmio.write(base + NOTIFY_CFG_OFFSET + 4, &1u16.to_le_bytes()).unwrap();
    assert_eq!(t.lock().unwrap().queue_events()[1].read().unwrap(), 1);
    // The guest moves the BAR: decoding off, new address, decoding on.
    ecam.write((1 << 15) | 4, &0u16.to_le_bytes());
    ecam.write((1 << 15) | 0x10, &0xc000_0000u32.to_le_bytes());
    ecam.write((1 << 15) | 0x14, &0u32.to_le_bytes());
    ecam.write((1 << 15) | 4, &COMMAND_MEMORY.to_le_bytes());
    assert_eq!(moves.0.lock().unwrap()[1..], [(1, 0, Some(base), None), (1, 0, None, Some(0xc000_0000))]);
    assert!(mmio.read(base, &mut b).is_err());
    mmio.write(0xc000_0000 + common(DEVICE_STATUS), &[1]).unwrap();
    assert_eq!(t.lock().unwrap().device_status(), 1);
    // The rest of the bring-up (directly) and an interrupt.
    {
        let mut t = t.lock().unwrap();
        bring_up(&mut t);
    }
    interrupt(&record).trigger(InterruptKind::Queue(0)).unwrap();
    assert_eq!(msis.take(), vec![1]);
}

#[test]
fn garbage_sweep_never_panics() {
    let Fixture { mut t, record, .. } = fixture();
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let bar_size = t.bar_size();
    for round in 0..12 {
        record.lock().unwrap().config_writes.clear();
        if round % 4 == 1 {
            bring_up(&mut t);
        }
        if round % 6 == 3 {
            for sel in [QUEUE_SELECT, DEVICE_FEATURE_SELECT, DRIVER_FEATURE_SELECT] {
                let len = if sel == QUEUE_SELECT { 2 } else { 4 };
                bw(&mut t, common(sel), len, rng.next_u64() % 4);
            }
        }
        let config = (0..0x1000u16).chain([0xfff9, 0xfffc, u16::MAX]);
        for offset in config {
            for size in [1usize, 2, 4, 8] {
                let mut buf = [0u8; 8];
                t.read_config(offset, &mut buf[..size]);
                // Writes to the command register and BAR would only move the
                // BAR; keep them in but not too often.
                if rng.next_u64() % 4 == 0 {
                    let v = if rng.next_u64() % 2 == 0 { rng.next_u64() % 0x100 } else { rng.next_u64() };
                    t.write_config(offset, &v.to_le_bytes()[..size]);
                }
            }
        }
        let bar = (0..bar_size).step_by(if round % 2 == 0 { 1 } else { 3 });
        for offset in bar.chain([bar_size, bar_size + 4, u64::MAX - 3, u64::MAX]) {
            for size in [1usize, 2, 4, 8] {
                let mut buf = [0u8; 8];
                t.read_bar(0, offset, &mut buf[..size]);
                let v = if rng.next_u64() % 2 == 0 { rng.next_u64() % 0x100 } else { rng.next_u64() };
                t.write_bar((rng.next_u64() % 8) as u8, offset, &v.to_le_bytes()[..size]);
                t.write_bar(0, offset, &v.to_le_bytes()[..size]);
            }
            if rng.next_u64() % 64 == 0 {
                t.process_notification((rng.next_u64() % 4) as usize);
            }
        }
        let mut empty = [0u8; 0];
        t.read_bar(0, 0, &mut empty);
        t.write_bar(0, common(DEVICE_STATUS), &[]);
        let mut big = [0u8; 64];
        t.read_bar(0, DEVICE_CFG_OFFSET, &mut big);
        t.write_bar(0, 0, &big);
        t.read_config(0, &mut big);
        t.write_config(0x40, &big);
        if let Some(irq) = record.lock().unwrap().interrupt.clone() {
            let _ = irq.trigger(InterruptKind::Config);
            let _ = irq.trigger(InterruptKind::Queue(1));
        }
    }
    // Still usable afterwards.
    bring_up(&mut t);
    assert_eq!(br(&mut t, common(DEVICE_STATUS), 1), 0xf);
    assert!(t.is_activated());
}
