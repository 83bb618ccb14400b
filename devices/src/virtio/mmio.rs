//! The virtio-mmio transport, version 2 ("modern") only (virtio 1.2, 4.2).
//!
//! One [`MmioTransport`] answers a [`WINDOW_SIZE`]-byte MMIO window: the
//! control registers of 4.2.2 in the first 0x100 bytes, the device-specific
//! configuration space from [`CONFIG_OFFSET`] on. Feature negotiation, the
//! status state machine and the queue configuration are the transport core's
//! (see `transport.rs` for the rules shared with virtio-pci); this file maps
//! the mmio registers onto it and owns the interrupt status.
//!
//! Choices this transport makes where the specification leaves room:
//!
//! - Control registers are 32 bits wide and 32-bit aligned; any other access
//!   below [`CONFIG_OFFSET`] reads as zero and writes are ignored. The
//!   configuration space is forwarded to the device at any width.
//!   Write-only registers read as zero.
//! - The vendor ID is [`VENDOR_ID`], "dmvm" in little-endian ASCII (the same
//!   convention as QEMU's "QEMU").
//! - `QueueNum` accepts any value but the size is checked at `DRIVER_OK`.
//! - Interrupts are edges: every trigger sets the InterruptStatus bit and
//!   pulses the line (the VMM declares the pin edge-triggered, active high),
//!   so an event arriving while the driver's handler runs is never lost.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use log::debug;
use vm_memory::GuestMemory;

use super::device::{InterruptKind, VirtioDevice, VirtioInterrupt};
use super::dma_access::DmaAccess;
use super::transport::{set_half, TransportCore, TransportInterrupt, VirtioTransport};
use crate::interrupt::InterruptLine;

pub use super::transport::status;
/// Why an mmio transport could not be built (the error every transport
/// shares).
pub type MmioError = super::transport::TransportError;

/// Size of the MMIO window of one transport (virtio 1.2, 4.2.1: 0x200).
pub const WINDOW_SIZE: u64 = 0x200;
/// Offset of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;
/// Offset of the `QueueNotify` register: the VMM registers each queue's
/// eventfd ([`VirtioTransport::queue_events`]) at `base + NOTIFY_OFFSET`, 4
/// bytes, with the queue index as datamatch.
pub const NOTIFY_OFFSET: u64 = 0x50;
/// `MagicValue`: "virt" in little-endian ASCII.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version`: 2, the non-legacy interface.
pub const VERSION: u32 = 2;
/// `VendorID` of dmavm's devices: "dmvm" in little-endian ASCII.
pub const VENDOR_ID: u32 = 0x6d76_6d64;

/// InterruptStatus bit: used buffers were added to a queue.
pub const INT_VRING: u32 = 0x1;
/// InterruptStatus bit: the configuration changed (or the device needs a
/// reset).
pub const INT_CONFIG: u32 = 0x2;

// Register offsets (virtio 1.2, 4.2.2, table 4.1).
const REG_MAGIC_VALUE: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = NOTIFY_OFFSET;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_SHM_SEL: u64 = 0x0ac;
const REG_SHM_LEN_LOW: u64 = 0x0b0;
const REG_SHM_LEN_HIGH: u64 = 0x0b4;
const REG_SHM_BASE_LOW: u64 = 0x0b8;
const REG_SHM_BASE_HIGH: u64 = 0x0bc;
const REG_CONFIG_GENERATION: u64 = 0x0fc;

/// The interrupt state shared between the transport (registers) and the
/// device (which triggers it from wherever it processes queues).
struct MmioInterrupt {
    /// InterruptStatus bits.
    status: AtomicU32,
    /// ConfigGeneration.
    config_generation: AtomicU32,
    line: Arc<dyn InterruptLine>,
}

impl MmioInterrupt {
    /// Sets `bits` in InterruptStatus and sends one edge.
    fn raise(&self, bits: u32) -> std::io::Result<()> {
        self.status.fetch_or(bits, Ordering::SeqCst);
        self.line.pulse().map_err(std::io::Error::other)
    }
}

impl VirtioInterrupt for MmioInterrupt {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        match kind {
            InterruptKind::Queue(_) => self.raise(INT_VRING),
            InterruptKind::Config => {
                // The configuration changed: a driver reading it across
                // this point must see a new generation and retry.
                self.config_generation.fetch_add(1, Ordering::SeqCst);
                self.raise(INT_CONFIG)
            }
        }
    }
}

impl TransportInterrupt for MmioInterrupt {
    fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    fn signal_needs_reset(&self) -> std::io::Result<()> {
        self.raise(INT_CONFIG)
    }
}

/// A virtio device behind a virtio-mmio (version 2) register window.
///
/// Its [`VirtioTransport`] accessors are how the VMM labels it and services
/// its queues: the VMM registers the eventfd of queue `i`
/// ([`VirtioTransport::queue_events`]) as a KVM ioeventfd at
/// `base + NOTIFY_OFFSET`, 4 bytes, datamatch `i`.
pub struct MmioTransport<M: GuestMemory + Send + Sync + 'static> {
    core: TransportCore<M>,
    /// The interrupt state the registers show (the core holds it too).
    interrupt: Arc<MmioInterrupt>,
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioTransport<M> for MmioTransport<M> {
    fn core(&self) -> &TransportCore<M> {
        &self.core
    }

    fn core_mut(&mut self) -> &mut TransportCore<M> {
        &mut self.core
    }
}

impl<M: GuestMemory + Send + Sync + 'static> std::fmt::Debug for MmioTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport").field("core", &self.core).finish()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> MmioTransport<M> {
    /// Wraps `device`, which will access its rings and buffers through
    /// `mem` (guest-physical or IOMMU-translated, per the DMA contract) and
    /// interrupt through `interrupt` (an edge-triggered pin).
    ///
    /// `dma_access` is the device's DMA path: it decides whether the
    /// transport offers `VIRTIO_F_ACCESS_PLATFORM` and whether the driver
    /// must accept it for `FEATURES_OK` to stick.
    pub fn new(
        device: Box<dyn VirtioDevice<M>>,
        mem: Arc<M>,
        interrupt: Arc<dyn InterruptLine>,
        dma_access: DmaAccess,
    ) -> Result<Self, MmioError> {
        let interrupt = Arc::new(MmioInterrupt {
            status: AtomicU32::new(0),
            config_generation: AtomicU32::new(0),
            line: interrupt,
        });
        // QueueSel is 32 bits wide: no limit beyond virtio's own.
        let core = TransportCore::new(device, mem, interrupt.clone(), dma_access, usize::MAX)?;
        Ok(Self { core, interrupt })
    }

    fn read_register(&self, offset: u64) -> u32 {
        let core = &self.core;
        match offset {
            REG_MAGIC_VALUE => MAGIC_VALUE,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => core.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => core.device_features_bank(),
            REG_QUEUE_NUM_MAX => core.selected_queue().map_or(0, |q| u32::from(q.max_size)),
            REG_QUEUE_READY => core.selected_queue().map_or(0, |q| u32::from(q.ready)),
            REG_INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst) & (INT_VRING | INT_CONFIG),
            REG_STATUS => core.status(),
            // No shared memory regions: a length of -1 says so (4.2.2).
            REG_SHM_LEN_LOW | REG_SHM_LEN_HIGH | REG_SHM_BASE_LOW | REG_SHM_BASE_HIGH => u32::MAX,
            REG_CONFIG_GENERATION => self.interrupt.config_generation.load(Ordering::SeqCst),
            _ => {
                debug!("{}: read of write-only or unknown register {offset:#x}", core.label);
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let core = &mut self.core;
        match offset {
            REG_DEVICE_FEATURES_SEL => core.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => core.driver_features_sel = value,
            REG_DRIVER_FEATURES => core.write_driver_features(value),
            REG_QUEUE_SEL => core.queue_sel = value,
            REG_QUEUE_NUM => {
                if let Some(q) = core.selected_queue_mut() {
                    q.size = value;
                }
            }
            REG_QUEUE_READY => core.set_queue_ready(value & 1 != 0),
            REG_QUEUE_NOTIFY => core.notify(u64::from(value)),
            REG_INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
            }
            REG_STATUS => core.write_status(value),
            REG_QUEUE_DESC_LOW | REG_QUEUE_DESC_HIGH => {
                if let Some(q) = core.selected_queue_mut() {
                    set_half(&mut q.desc, offset == REG_QUEUE_DESC_HIGH, value);
                }
            }
            REG_QUEUE_DRIVER_LOW | REG_QUEUE_DRIVER_HIGH => {
                if let Some(q) = core.selected_queue_mut() {
                    set_half(&mut q.driver, offset == REG_QUEUE_DRIVER_HIGH, value);
                }
            }
            REG_QUEUE_DEVICE_LOW | REG_QUEUE_DEVICE_HIGH => {
                if let Some(q) = core.selected_queue_mut() {
                    set_half(&mut q.device, offset == REG_QUEUE_DEVICE_HIGH, value);
                }
            }
            // There are no shared memory regions to select.
            REG_SHM_SEL => {}
            _ => debug!("{}: write of {value:#x} to read-only or unknown register {offset:#x}", core.label),
        }
    }

    /// Whether `[offset, offset + len)` lies in the configuration space.
    fn in_config(offset: u64, len: usize) -> bool {
        offset >= CONFIG_OFFSET
            && u64::try_from(len)
                .ok()
                .and_then(|l| offset.checked_add(l))
                .is_some_and(|end| end <= WINDOW_SIZE)
    }
}

impl<M: GuestMemory + Send + Sync + 'static> crate::bus::BusDevice for MmioTransport<M> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG_OFFSET {
            if Self::in_config(offset, data.len()) {
                self.core.device.read_config(offset - CONFIG_OFFSET, data);
            }
            return;
        }
        if offset % 4 != 0 {
            return;
        }
        if let Ok(bytes) = <&mut [u8; 4]>::try_from(data) {
            *bytes = self.read_register(offset).to_le_bytes();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            if Self::in_config(offset, data.len()) {
                self.core.device.write_config(offset - CONFIG_OFFSET, data);
            }
            return;
        }
        if offset % 4 != 0 {
            return;
        }
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::bus::BusDevice;
    use crate::interrupt::InterruptError;
    use crate::test_utils::recording_device::{rings, seen, MockDevice, Record};
    use crate::test_utils::xorshift::Xorshift;
    use crate::virtio::device::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
    use crate::virtio::dma_access::VIRTIO_F_ACCESS_PLATFORM;

    type Mem = GuestMemoryMmap<()>;

    const MEM_SIZE: u64 = 0x10_0000;
    const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | 0x5;

    #[derive(Default)]
    struct MockLine {
        asserts: AtomicUsize,
        deasserts: AtomicUsize,
    }

    impl InterruptLine for MockLine {
        fn assert(&self) -> Result<(), InterruptError> {
            self.asserts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn deassert(&self) -> Result<(), InterruptError> {
            self.deasserts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl MockLine {
        fn pulses(&self) -> usize {
            self.deasserts.load(Ordering::SeqCst)
        }
    }

    struct Fixture {
        t: MmioTransport<Mem>,
        record: Arc<Mutex<Record>>,
        line: Arc<MockLine>,
    }

    fn fixture_with(features: u64, dma_access: DmaAccess) -> Fixture {
        let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap());
        let record = Arc::new(Mutex::new(Record::default()));
        let device = MockDevice { device_type: 4, features, sizes: vec![256, 16], record: record.clone() };
        let line = Arc::new(MockLine::default());
        let t = MmioTransport::new(Box::new(device), mem, line.clone(), dma_access).unwrap();
        Fixture { t, record, line }
    }

    fn fixture() -> Fixture {
        fixture_with(FEATURES, DmaAccess::GuestPhysical)
    }

    fn r(t: &mut MmioTransport<Mem>, offset: u64) -> u32 {
        let mut b = [0xffu8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport<Mem>, offset: u64, v: u32) {
        t.write(offset, &v.to_le_bytes());
    }

    /// Linux's virtio_mmio probe up to and including the FEATURES_OK
    /// read-back; returns whether FEATURES_OK stuck.
    fn negotiate(t: &mut MmioTransport<Mem>, accept: impl Fn(u64) -> u64) -> bool {
        assert_eq!(r(t, REG_MAGIC_VALUE), MAGIC_VALUE);
        assert_eq!(r(t, REG_VERSION), 2);
        assert_ne!(r(t, REG_DEVICE_ID), 0);
        w(t, REG_STATUS, 0);
        assert_eq!(r(t, REG_STATUS), 0);
        w(t, REG_STATUS, status::ACKNOWLEDGE);
        w(t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(t, REG_DEVICE_FEATURES_SEL, 1);
        let mut offered = u64::from(r(t, REG_DEVICE_FEATURES)) << 32;
        w(t, REG_DEVICE_FEATURES_SEL, 0);
        offered |= u64::from(r(t, REG_DEVICE_FEATURES));
        let acked = accept(offered);
        w(t, REG_DRIVER_FEATURES_SEL, 1);
        w(t, REG_DRIVER_FEATURES, (acked >> 32) as u32);
        w(t, REG_DRIVER_FEATURES_SEL, 0);
        w(t, REG_DRIVER_FEATURES, acked as u32);
        w(t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        r(t, REG_STATUS) & status::FEATURES_OK != 0
    }

    /// Linux's vm_setup_vq for queue `i` with `size` entries.
    fn setup_queue(t: &mut MmioTransport<Mem>, i: u32, size: u32) {
        w(t, REG_QUEUE_SEL, i);
        assert_eq!(r(t, REG_QUEUE_READY), 0);
        assert!(r(t, REG_QUEUE_NUM_MAX) >= size);
        w(t, REG_QUEUE_NUM, size);
        let (desc, avail, used) = rings(u64::from(i));
        w(t, REG_QUEUE_DESC_LOW, desc as u32);
        w(t, REG_QUEUE_DESC_HIGH, (desc >> 32) as u32);
        w(t, REG_QUEUE_DRIVER_LOW, avail as u32);
        w(t, REG_QUEUE_DRIVER_HIGH, (avail >> 32) as u32);
        w(t, REG_QUEUE_DEVICE_LOW, used as u32);
        w(t, REG_QUEUE_DEVICE_HIGH, (used >> 32) as u32);
        w(t, REG_QUEUE_READY, 1);
        assert_eq!(r(t, REG_QUEUE_READY), 1);
    }

    /// The whole Linux init sequence, accepting every offered feature.
    fn bring_up(t: &mut MmioTransport<Mem>) {
        assert!(negotiate(t, |f| f));
        setup_queue(t, 0, 128);
        setup_queue(t, 1, 16);
        w(t, REG_STATUS, 0xf);
    }

    /// A driver that loops on "reset, then DRIVER_OK" (a failure each
    /// time) gets a bounded number of lines in the log at their level;
    /// the rest go to debug level.
    #[test]
    fn repeated_driver_ok_without_features_ok_does_not_flood_the_log() {
        use crate::log_limit::{BURST, REFILL};
        use crate::test_utils::log_capture;
        log_capture::install();
        const LABEL: &str = "flood-test@mmio";
        const ROUNDS: u32 = 20_000;
        let Fixture { t, .. } = fixture();
        let mut t = t.with_label(LABEL);
        let start = std::time::Instant::now();
        for _ in 0..ROUNDS {
            w(&mut t, REG_STATUS, 0);
            w(&mut t, REG_STATUS, status::DRIVER_OK);
            assert_ne!(r(&mut t, REG_STATUS) & status::DEVICE_NEEDS_RESET, 0);
        }
        let refills = (start.elapsed().as_nanos() / REFILL.as_nanos()) as usize;
        let loud = log_capture::count_at_least(LABEL, log::Level::Info);
        assert!(loud >= 1, "the first failure is logged at its level");
        assert!(loud <= BURST as usize + refills, "{loud} lines at warn or error level");
        // Nothing is lost at debug level.
        let all = log_capture::records_with(LABEL);
        assert!(
            all.iter().filter(|(_, m)| m.contains("DRIVER_OK without FEATURES_OK")).count()
                >= ROUNDS as usize
        );
    }

    #[test]
    fn identification_registers() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(r(&mut t, REG_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        assert_eq!(r(&mut t, REG_DEVICE_ID), 4);
        assert_eq!(r(&mut t, REG_VENDOR_ID), VENDOR_ID);
        assert_eq!(t.device_type(), 4);
        assert_eq!(t.label(), "virtio-rng");
        // Narrow or misaligned reads of registers are zero.
        let mut b = [0xffu8; 2];
        t.read(REG_MAGIC_VALUE, &mut b);
        assert_eq!(b, [0, 0]);
        let mut b = [0xffu8; 4];
        t.read(REG_MAGIC_VALUE + 1, &mut b);
        assert_eq!(b, [0; 4]);
        let mut b = [0xffu8; 8];
        t.read(REG_MAGIC_VALUE, &mut b);
        assert_eq!(b, [0; 8]);
        // No shared memory regions.
        w(&mut t, REG_SHM_SEL, 0);
        assert_eq!(r(&mut t, REG_SHM_LEN_LOW), u32::MAX);
        assert_eq!(r(&mut t, REG_SHM_LEN_HIGH), u32::MAX);
        // Write-only registers read as zero.
        assert_eq!(r(&mut t, REG_QUEUE_NOTIFY), 0);
        assert_eq!(r(&mut t, REG_DRIVER_FEATURES), 0);
    }

    #[test]
    fn linux_init_sequence_activates_device() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        assert!(t.is_activated());
        let rec = record.lock().unwrap();
        assert_eq!(rec.activations.len(), 1);
        let (queues, features) = &rec.activations[0];
        assert_eq!(*features, FEATURES);
        assert_eq!(queues, &vec![seen(0, 128, true), seen(1, 16, true)]);
    }

    #[test]
    fn disabled_queue_is_handed_over_not_ready() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f & !VIRTIO_RING_F_EVENT_IDX));
        setup_queue(&mut t, 1, 8);
        w(&mut t, REG_STATUS, 0xf);
        let rec = record.lock().unwrap();
        let (queues, features) = &rec.activations[0];
        assert_eq!(*features, FEATURES & !VIRTIO_RING_F_EVENT_IDX);
        assert!(!queues[0].ready);
        assert_eq!(queues[1], seen(1, 8, false));
    }

    #[test]
    fn offered_features_are_split_in_banks() {
        let Fixture { mut t, .. } = fixture_with(FEATURES | (1 << 34) | (1 << 40), DmaAccess::GuestPhysical);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), FEATURES as u32);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        // Packed rings and queue reset are not offered by this transport.
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 0);
        assert_eq!(t.offered_features(), FEATURES);
    }

    #[test]
    fn features_ok_refused_without_version_1() {
        let Fixture { mut t, record, .. } = fixture();
        let resets = record.lock().unwrap().resets;
        assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_VERSION_1));
        assert_eq!(r(&mut t, REG_STATUS), status::ACKNOWLEDGE | status::DRIVER);
        // One for the driver's status 0, one for the refusal.
        assert_eq!(record.lock().unwrap().resets, resets + 2);
        // DRIVER_OK now cannot activate anything.
        w(&mut t, REG_STATUS, 0x7);
        assert!(record.lock().unwrap().activations.is_empty());
        assert!(!t.is_activated());
        assert_ne!(r(&mut t, REG_STATUS) & status::DEVICE_NEEDS_RESET, 0);
        // A reset and a proper negotiation work.
        bring_up(&mut t);
        assert!(t.is_activated());
    }

    #[test]
    fn features_ok_refused_for_unoffered_features() {
        let Fixture { mut t, .. } = fixture();
        assert!(!negotiate(&mut t, |f| f | (1 << 20)));
        let Fixture { mut t, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        // Bank 2 (bits 64..) holds nothing.
        w(&mut t, REG_STATUS, 0);
        w(&mut t, REG_STATUS, 0x3);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 2);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(&mut t, REG_STATUS, 0xb);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
    }

    #[test]
    fn access_platform_required_behind_iommu() {
        // The device does not know the bit: the transport adds it.
        let features = FEATURES | VIRTIO_F_ACCESS_PLATFORM;
        let Fixture { mut t, record, .. } = fixture_with(FEATURES, DmaAccess::Translated);
        assert_eq!(t.dma_access(), DmaAccess::Translated);
        assert_eq!(t.offered_features(), features);
        assert!(!negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
        assert_eq!(record.lock().unwrap().resets, 2);
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 0, 256);
        w(&mut t, REG_STATUS, 0xf);
        assert_eq!(record.lock().unwrap().activations[0].1, features);

        // Without an IOMMU the driver may decline it.
        let Fixture { mut t, record, .. } = fixture_with(FEATURES, DmaAccess::PlatformIdentity);
        assert_eq!(t.offered_features(), features);
        assert!(negotiate(&mut t, |f| f & !VIRTIO_F_ACCESS_PLATFORM));
        setup_queue(&mut t, 0, 256);
        w(&mut t, REG_STATUS, 0xf);
        assert_eq!(record.lock().unwrap().activations[0].1, FEATURES);

        // Direct access: never offered, even by a device that claims it,
        // and a driver accepting it anyway is refused.
        let Fixture { mut t, .. } = fixture_with(features, DmaAccess::GuestPhysical);
        assert_eq!(t.offered_features(), FEATURES);
        assert!(!negotiate(&mut t, |f| f | VIRTIO_F_ACCESS_PLATFORM));
        assert!(negotiate(&mut t, |f| f));
    }

    #[test]
    fn constructor_rejects_impossible_devices() {
        let mem = Arc::new(Mem::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap());
        let line: Arc<dyn InterruptLine> = Arc::new(MockLine::default());
        let make = |features: u64, sizes: Vec<u16>| {
            let record = Arc::new(Mutex::new(Record::default()));
            let device = MockDevice { device_type: 4, features, sizes, record };
            MmioTransport::new(Box::new(device), mem.clone(), line.clone(), DmaAccess::Translated)
        };
        assert!(matches!(make(0x1, vec![16]), Err(MmioError::NoVersion1(_))));
        for bad in [0, 3, 0x8000 + 1] {
            assert!(matches!(
                make(FEATURES, vec![16, bad]),
                Err(MmioError::InvalidQueueMaxSize { index: 1, .. })
            ));
        }
        let t = make(FEATURES, vec![]).unwrap().with_label("rng@0xd0000000");
        assert_eq!(t.label(), "rng@0xd0000000");
        assert!(t.queue_events().is_empty());
    }

    #[test]
    fn status_zero_resets_everything() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        let resets = record.lock().unwrap().resets;
        record.lock().unwrap().interrupt.clone().unwrap().trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING);
        w(&mut t, REG_QUEUE_SEL, 1);
        w(&mut t, REG_STATUS, 0);
        assert_eq!(record.lock().unwrap().resets, resets + 1);
        assert_eq!(r(&mut t, REG_STATUS), 0);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 0);
        assert!(!t.is_activated());
        for i in 0..2 {
            w(&mut t, REG_QUEUE_SEL, i);
            assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        }
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 16);
        // Notifications after a reset do not reach the device.
        t.process_notification(0);
        assert!(record.lock().unwrap().processed.is_empty());
        // And a second bring-up works from scratch.
        bring_up(&mut t);
        assert_eq!(record.lock().unwrap().activations.len(), 2);
        assert_eq!(record.lock().unwrap().activations[1].0[1], seen(1, 16, true));
    }

    #[test]
    fn status_bits_cannot_be_cleared_or_forged() {
        let Fixture { mut t, .. } = fixture();
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
        w(&mut t, REG_STATUS, status::DEVICE_NEEDS_RESET | 0x30 | 0x3);
        assert_eq!(r(&mut t, REG_STATUS), 0x3);
        w(&mut t, REG_STATUS, status::FAILED);
        assert_eq!(r(&mut t, REG_STATUS), 0x83);
    }

    #[test]
    fn queue_registers_frozen_when_ready_and_after_driver_ok() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 0, 64);
        // Ready: changes are ignored.
        w(&mut t, REG_QUEUE_NUM, 32);
        w(&mut t, REG_QUEUE_DESC_LOW, 0x8000);
        w(&mut t, REG_QUEUE_DRIVER_HIGH, 1);
        w(&mut t, REG_QUEUE_DEVICE_LOW, 0x9000);
        // Un-readying before DRIVER_OK is allowed, and unfreezes.
        w(&mut t, REG_QUEUE_SEL, 1);
        setup_queue(&mut t, 1, 16);
        w(&mut t, REG_QUEUE_READY, 0);
        assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        w(&mut t, REG_QUEUE_NUM, 8);
        w(&mut t, REG_QUEUE_READY, 1);
        w(&mut t, REG_STATUS, 0xf);
        // After DRIVER_OK nothing changes, not even QueueReady.
        w(&mut t, REG_QUEUE_SEL, 0);
        w(&mut t, REG_QUEUE_READY, 0);
        assert_eq!(r(&mut t, REG_QUEUE_READY), 1);
        let rec = record.lock().unwrap();
        assert_eq!(rec.activations[0].0, vec![seen(0, 64, true), seen(1, 8, true)]);
    }

    #[test]
    fn bad_queue_configuration_needs_reset() {
        // Not a power of two, too large, misaligned, outside memory.
        let cases: [(u32, u64); 4] = [(100, 0), (512, 0), (64, 0x8), (64, MEM_SIZE)];
        for (size, desc_shift) in cases {
            let Fixture { mut t, record, line } = fixture();
            assert!(negotiate(&mut t, |f| f));
            w(&mut t, REG_QUEUE_SEL, 0);
            w(&mut t, REG_QUEUE_NUM, size);
            w(&mut t, REG_QUEUE_DESC_LOW, (0x1_0000 + desc_shift) as u32);
            w(&mut t, REG_QUEUE_DRIVER_LOW, 0x1_1000);
            w(&mut t, REG_QUEUE_DEVICE_LOW, 0x1_2000);
            w(&mut t, REG_QUEUE_READY, 1);
            w(&mut t, REG_STATUS, 0xf);
            assert!(record.lock().unwrap().activations.is_empty(), "size {size} shift {desc_shift:#x}");
            assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
            assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
            assert_eq!(line.pulses(), 1);
            assert!(!t.is_activated());
        }
    }

    #[test]
    fn device_errors_set_needs_reset() {
        let Fixture { mut t, record, line } = fixture();
        record.lock().unwrap().fail_activate = true;
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
        assert_eq!(line.pulses(), 1);
        t.process_notification(0);
        assert!(record.lock().unwrap().processed.is_empty());

        // Reset clears the error; a failing queue sets it again.
        record.lock().unwrap().fail_activate = false;
        w(&mut t, REG_STATUS, 0);
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        record.lock().unwrap().fail_process = true;
        t.process_notification(1);
        assert_eq!(r(&mut t, REG_STATUS), 0xf | status::DEVICE_NEEDS_RESET);
        assert_eq!(line.pulses(), 2);
        t.process_notification(1);
        assert_eq!(record.lock().unwrap().processed, vec![1]);
    }

    #[test]
    fn notify_signals_eventfd_and_process_forwards() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        w(&mut t, NOTIFY_OFFSET, 1);
        w(&mut t, NOTIFY_OFFSET, 1);
        w(&mut t, NOTIFY_OFFSET, 2);
        w(&mut t, NOTIFY_OFFSET, u32::MAX);
        assert_eq!(t.queue_events()[1].read().unwrap(), 2);
        assert_eq!(t.queue_events()[0].read().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        // The trapped write itself never reaches the device.
        assert!(record.lock().unwrap().processed.is_empty());
        t.process_notification(1);
        t.process_notification(0);
        t.process_notification(2);
        t.process_notification(usize::MAX);
        assert_eq!(record.lock().unwrap().processed, vec![1, 0]);
    }

    #[test]
    fn device_with_work_left_is_scheduled_again() {
        let Fixture { mut t, record, .. } = fixture();
        bring_up(&mut t);
        let pending = |t: &MmioTransport<Mem>, q: usize| t.queue_events()[q].read().is_ok();
        // Three passes of work: the first two leave some, the third none.
        record.lock().unwrap().passes_left = 3;
        t.process_notification(1);
        assert!(pending(&t, 1));
        t.process_notification(1);
        assert!(pending(&t, 1));
        t.process_notification(1);
        assert!(!pending(&t, 1));
        assert!(!pending(&t, 0));
        assert_eq!(record.lock().unwrap().processed, vec![1, 1, 1]);
        // A failed pass is not scheduled again: the device needs a reset.
        let mut r = record.lock().unwrap();
        r.passes_left = 2;
        r.fail_process = true;
        drop(r);
        t.process_notification(1);
        assert!(!pending(&t, 1));
    }

    #[test]
    fn inline_device_processes_notify_writes_at_once() {
        let Fixture { mut t, record, .. } = fixture();
        record.lock().unwrap().notify_inline = true;
        assert!(t.notifies_inline());
        w(&mut t, NOTIFY_OFFSET, 1);
        assert!(record.lock().unwrap().processed.is_empty(), "not yet DRIVER_OK");
        bring_up(&mut t);
        w(&mut t, NOTIFY_OFFSET, 1);
        w(&mut t, NOTIFY_OFFSET, 0);
        w(&mut t, NOTIFY_OFFSET, 2);
        w(&mut t, NOTIFY_OFFSET, u32::MAX);
        assert_eq!(record.lock().unwrap().processed, vec![1, 0]);
        // Nothing went through the eventfds.
        for evt in t.queue_events() {
            assert_eq!(evt.read().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn notification_of_disabled_queue_is_dropped() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        setup_queue(&mut t, 1, 16);
        t.process_notification(1);
        assert!(record.lock().unwrap().processed.is_empty(), "not yet DRIVER_OK");
        w(&mut t, REG_STATUS, 0xf);
        t.process_notification(0);
        t.process_notification(1);
        assert_eq!(record.lock().unwrap().processed, vec![1]);
    }

    #[test]
    fn interrupt_status_and_ack() {
        let Fixture { mut t, record, line } = fixture();
        bring_up(&mut t);
        let irq = record.lock().unwrap().interrupt.clone().unwrap();
        let generation = r(&mut t, REG_CONFIG_GENERATION);
        irq.trigger(InterruptKind::Queue(1)).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING);
        assert_eq!(line.pulses(), 1);
        irq.trigger(InterruptKind::Config).unwrap();
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_VRING | INT_CONFIG);
        assert_eq!(r(&mut t, REG_CONFIG_GENERATION), generation.wrapping_add(1));
        assert_eq!(line.pulses(), 2);
        // Every trigger is an edge, even with the bit already pending.
        irq.trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(line.pulses(), 3);
        assert_eq!(line.asserts.load(Ordering::SeqCst), 3);
        w(&mut t, REG_INTERRUPT_ACK, INT_VRING);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INT_CONFIG);
        w(&mut t, REG_INTERRUPT_ACK, u32::MAX);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 0);
    }

    #[test]
    fn out_of_range_queue_select() {
        let Fixture { mut t, record, .. } = fixture();
        assert!(negotiate(&mut t, |f| f));
        for sel in [2, 0x8000, u32::MAX] {
            w(&mut t, REG_QUEUE_SEL, sel);
            assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0);
            w(&mut t, REG_QUEUE_NUM, 16);
            w(&mut t, REG_QUEUE_DESC_LOW, 0x1000);
            w(&mut t, REG_QUEUE_READY, 1);
            assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        }
        w(&mut t, REG_STATUS, 0xf);
        let rec = record.lock().unwrap();
        assert!(rec.activations[0].0.iter().all(|q| !q.ready));
    }

    #[test]
    fn config_space_forwarded_at_any_width() {
        let Fixture { mut t, record, .. } = fixture();
        let mut b = [0u8; 1];
        t.read(CONFIG_OFFSET + 3, &mut b);
        assert_eq!(b, [0xa3]);
        let mut b = [0u8; 8];
        t.read(CONFIG_OFFSET + 0x10, &mut b);
        assert_eq!(b, [0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7]);
        // Spilling past the window reads zeros and is not forwarded.
        let mut b = [0xffu8; 4];
        t.read(WINDOW_SIZE - 2, &mut b);
        assert_eq!(b, [0; 4]);
        t.write(CONFIG_OFFSET + 2, &[1, 2]);
        t.write(WINDOW_SIZE - 2, &[1, 2, 3, 4]);
        t.write(u64::MAX, &[1]);
        assert_eq!(record.lock().unwrap().config_writes, vec![(2, vec![1, 2])]);
    }

    #[test]
    fn garbage_sweep_never_panics() {
        let Fixture { mut t, record, .. } = fixture();
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..64 {
            if round % 4 == 1 {
                bring_up(&mut t);
            }
            if round % 8 == 3 {
                // Small values hit the meaningful cases (selectors, sizes,
                // status bits) more often.
                for reg in [REG_QUEUE_SEL, REG_DEVICE_FEATURES_SEL, REG_DRIVER_FEATURES_SEL] {
                    w(&mut t, reg, (rng.next_u64() % 4) as u32);
                }
            }
            for offset in (0..WINDOW_SIZE).chain([WINDOW_SIZE, WINDOW_SIZE + 4, u64::MAX - 3, u64::MAX]) {
                for size in [1usize, 2, 4, 8] {
                    let mut buf = [0u8; 8];
                    t.read(offset, &mut buf[..size]);
                    let v = if rng.next_u64() % 2 == 0 { rng.next_u64() % 0x100 } else { rng.next_u64() };
                    t.write(offset, &v.to_le_bytes()[..size]);
                }
                if rng.next_u64() % 16 == 0 {
                    t.process_notification((rng.next_u64() % 4) as usize);
                }
            }
            let mut empty = [0u8; 0];
            t.read(REG_STATUS, &mut empty);
            t.write(REG_STATUS, &[]);
            let mut big = [0u8; 32];
            t.read(CONFIG_OFFSET, &mut big);
            t.write(REG_STATUS, &big);
            if let Some(irq) = record.lock().unwrap().interrupt.clone() {
                let _ = irq.trigger(InterruptKind::Config);
            }
        }
        // Still usable afterwards.
        bring_up(&mut t);
        assert_eq!(r(&mut t, REG_STATUS), 0xf);
        assert!(t.is_activated());
    }
}
