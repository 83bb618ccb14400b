//! The virtio-pci transport, modern interface only (virtio 1.2, 4.1), with
//! MSI-X.
//!
//! A [`VirtioPciTransport`] is a PCI function (vendor 0x1af4, device
//! 0x1040 + the virtio device ID, revision 1) with one 64-bit
//! non-prefetchable memory BAR, [`VIRTIO_PCI_BAR`], laid out as:
//!
//! | BAR offset | size | what |
//! |---|---|---|
//! | [`COMMON_CFG_OFFSET`] | 4 KiB | common configuration (4.1.4.3) |
//! | [`ISR_CFG_OFFSET`] | 4 KiB | ISR status, byte 0 (4.1.4.5) |
//! | [`DEVICE_CFG_OFFSET`] | 4 KiB | device-specific configuration |
//! | [`NOTIFY_CFG_OFFSET`] | 4 KiB or more | one notify address per queue, `queue * NOTIFY_OFF_MULTIPLIER` |
//! | after notify | 4 KiB or more | MSI-X table (one vector per queue, plus one) |
//! | after the table | 4 KiB | MSI-X pending bit array |
//!
//! The BAR's size is the next power of two (32 KiB for up to 1024 queues).
//! Configuration space holds, from 0x40, the vendor-specific capabilities
//! for the common, notify, ISR, device and PCI-configuration-access
//! structures, then the MSI-X capability. There is no INTx pin and no
//! legacy (0.9.5) I/O BAR.
//!
//! Feature negotiation, the status state machine, the queue configuration
//! and the `FEATURES_OK` refusals (including the DMA contract's
//! `VIRTIO_F_ACCESS_PLATFORM`, from the transport's [`DmaAccess`]) are the
//! transport core's, identical to virtio-mmio (see `transport.rs`). Choices
//! specific to this transport:
//!
//! - Common configuration fields answer only accesses of their natural
//!   width at their offset (64-bit fields also as two 32-bit halves);
//!   anything else reads as zero and writes are ignored. The device
//!   configuration is forwarded at any width. Every region answers only
//!   accesses that lie wholly inside it.
//! - `queue_msix_vector` and `config_msix_vector` accept a vector the MSI-X
//!   table has and read back [`VIRTIO_MSI_NO_VECTOR`] for anything else;
//!   a device reset sets every vector back to [`VIRTIO_MSI_NO_VECTOR`]. The
//!   MSI-X table itself survives a device reset (it is PCI function state).
//! - Interrupts: with MSI-X enabled a queue interrupt goes to the queue's
//!   vector and a configuration interrupt (also sent for
//!   `DEVICE_NEEDS_RESET`) sets ISR bit 1 and goes to the configuration
//!   vector; a vector of [`VIRTIO_MSI_NO_VECTOR`] sends nothing. With MSI-X
//!   disabled only the ISR bits are set: there is no INTx to raise.
//! - Notifications: a write of any width at a queue's notify address
//!   signals that queue's eventfd (the value written is ignored); the VMM
//!   registers the same eventfds as ioeventfds at those addresses.
//! - The PCI configuration access capability (cfg_type 5) reaches the BAR
//!   whatever the command register says, for `bar` 0, `length` 1, 2 or 4
//!   and `offset` aligned to `length` inside the BAR; other settings make
//!   `pci_cfg_data` inert.

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;

use log::debug;
use vm_memory::GuestMemory;

use super::device::{InterruptKind, VirtioDevice, VirtioInterrupt};
use super::dma_access::DmaAccess;
use super::transport::{
    device_name, set_half, TransportCore, TransportError, TransportInterrupt, VirtioTransport,
};
use crate::pci::{
    overlaps, BarKind, MsixBackend, MsixVectors, PciBar, PciConfigSpace, PciDevice, PciIds, PCI_CAP_ID_MSIX,
    PCI_CAP_ID_VNDR,
};

#[cfg(test)]
mod tests;

/// Vendor ID of virtio PCI functions.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// PCI device ID of a modern virtio device: this plus the virtio device ID.
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Revision ID of a non-transitional device (4.1.2.1).
pub const VIRTIO_PCI_REVISION: u8 = 1;
/// "No vector" in `config_msix_vector` and `queue_msix_vector`.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;
/// The BAR holding every structure.
pub const VIRTIO_PCI_BAR: u8 = 0;
/// BAR offset of the common configuration structure.
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
/// BAR offset of the ISR status byte.
pub const ISR_CFG_OFFSET: u64 = 0x1000;
/// BAR offset of the device-specific configuration.
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
/// BAR offset of the notification region.
pub const NOTIFY_CFG_OFFSET: u64 = 0x3000;
/// `notify_off_multiplier`: queue `n` is notified at
/// `NOTIFY_CFG_OFFSET + n * NOTIFY_OFF_MULTIPLIER`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Most queues a device may have (one MSI-X vector each, plus one for
/// configuration changes, in a 2048-entry table).
pub const MAX_QUEUES: usize = 2047;

/// Size of each of the fixed regions.
const REGION_SIZE: u64 = 0x1000;
/// Size of the common configuration structure (virtio 1.2, including the
/// queue reset and admin queue fields, which read as zero here).
const COMMON_CFG_SIZE: u64 = 0x40;

/// `cfg_type` values of the vendor-specific capabilities (4.1.4).
pub mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
    /// PCI configuration access.
    pub const PCI: u8 = 5;
}

/// ISR bit: a queue interrupt (only without MSI-X).
pub const ISR_QUEUE: u8 = 0x1;
/// ISR bit: a configuration change.
pub const ISR_CONFIG: u8 = 0x2;

// Common configuration offsets (4.1.4.3).
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const CONFIG_MSIX_VECTOR: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
/// End of the three 64-bit queue address fields.
const QUEUE_ADDRESSES_END: u64 = QUEUE_DEVICE + 8;

// Offsets inside a virtio vendor capability (4.1.4).
const CAP_BAR: u16 = 4;
const CAP_OFFSET: u16 = 8;
const CAP_LENGTH: u16 = 12;
const CAP_EXTRA: u16 = 16;
// Offset of message control in the MSI-X capability.
const MSIX_CONTROL: u16 = 2;

/// The PCI class code for a virtio device type, as QEMU and Linux expect
/// (mass storage "SCSI" for block, as QEMU has always done).
fn class_code(device_type: u32) -> u32 {
    match device_type {
        1 => 0x02_00_00,  // network, ethernet
        2 => 0x01_00_00,  // mass storage, SCSI
        3 => 0x07_80_00,  // simple communication, other
        8 => 0x01_00_00,  // SCSI host
        16 => 0x03_80_00, // display, other
        18 => 0x09_80_00, // input, other
        _ => 0xff_00_00,  // unclassified (rng, iommu, ...)
    }
}

fn align_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

/// What an offset in the BAR is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Common,
    Isr,
    Device,
    Notify,
    MsixTable,
    MsixPba,
}

/// Where everything sits in the BAR.
#[derive(Debug, Clone, Copy)]
struct Layout {
    notify_size: u64,
    table: u64,
    table_size: u64,
    pba: u64,
    pba_size: u64,
    bar_size: u64,
}

impl Layout {
    fn new(queues: usize, msix: &MsixVectors) -> Self {
        let notify_size = align_up((queues.max(1) as u64) * u64::from(NOTIFY_OFF_MULTIPLIER), REGION_SIZE);
        let table = NOTIFY_CFG_OFFSET + notify_size;
        let table_size = align_up(msix.table_size(), REGION_SIZE);
        let pba = table + table_size;
        let pba_size = align_up(msix.pba_size(), REGION_SIZE);
        let bar_size = (pba + pba_size).next_power_of_two();
        Self { notify_size, table, table_size, pba, pba_size, bar_size }
    }

    /// The region an access of `len` bytes at `offset` falls in and the
    /// offset inside it, if the access lies wholly inside one region.
    fn region(&self, offset: u64, len: usize) -> Option<(Region, u64)> {
        let regions = [
            (COMMON_CFG_OFFSET, REGION_SIZE, Region::Common),
            (ISR_CFG_OFFSET, REGION_SIZE, Region::Isr),
            (DEVICE_CFG_OFFSET, REGION_SIZE, Region::Device),
            (NOTIFY_CFG_OFFSET, self.notify_size, Region::Notify),
            (self.table, self.table_size, Region::MsixTable),
            (self.pba, self.pba_size, Region::MsixPba),
        ];
        let end = offset.checked_add(u64::try_from(len).ok()?)?;
        regions
            .iter()
            .find(|(start, size, _)| offset >= *start && end <= start + size)
            .map(|&(start, _, region)| (region, offset - start))
    }
}

/// The interrupt state shared between the transport (registers) and the
/// device (which triggers it from wherever it processes queues).
struct PciInterrupt {
    isr: AtomicU8,
    config_generation: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    msix: Arc<MsixVectors>,
}

impl PciInterrupt {
    fn send(&self, vector: u16) -> std::io::Result<()> {
        if vector == VIRTIO_MSI_NO_VECTOR {
            return Ok(());
        }
        self.msix.trigger(vector).map_err(std::io::Error::other)
    }

    fn signal_config(&self) -> std::io::Result<()> {
        self.isr.fetch_or(ISR_CONFIG, Ordering::SeqCst);
        self.send(self.config_vector.load(Ordering::SeqCst))
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        match kind {
            InterruptKind::Queue(q) => {
                if !self.msix.is_enabled() {
                    // 4.1.4.5.1: the queue bit only without MSI-X.
                    self.isr.fetch_or(ISR_QUEUE, Ordering::SeqCst);
                    return Ok(());
                }
                match self.queue_vectors.get(usize::from(q)) {
                    Some(v) => self.send(v.load(Ordering::SeqCst)),
                    None => Ok(()),
                }
            }
            InterruptKind::Config => {
                // The configuration changed: a driver reading it across
                // this point must see a new generation and retry.
                self.config_generation.fetch_add(1, Ordering::SeqCst);
                self.signal_config()
            }
        }
    }
}

impl TransportInterrupt for PciInterrupt {
    fn reset(&self) {
        self.isr.store(0, Ordering::SeqCst);
        self.config_vector.store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        for v in &self.queue_vectors {
            v.store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        }
    }

    fn signal_needs_reset(&self) -> std::io::Result<()> {
        self.signal_config()
    }
}

/// A virtio device behind a modern virtio-pci function.
///
/// Its [`VirtioTransport`] accessors are how the VMM labels it and services
/// its queues: while the BAR decodes at `base`, the VMM registers the
/// eventfd of queue `i` ([`VirtioTransport::queue_events`]) as a KVM
/// ioeventfd at `base + notify_offset(i)` (any length, no datamatch: every
/// queue has its own address).
pub struct VirtioPciTransport<M: GuestMemory + Send + Sync + 'static> {
    core: TransportCore<M>,
    /// The interrupt state the registers show (the core holds it too).
    interrupt: Arc<PciInterrupt>,
    config: PciConfigSpace,
    msix: Arc<MsixVectors>,
    /// Offset of the MSI-X capability.
    msix_cap: u16,
    /// Offset of the PCI configuration access capability.
    cfg_cap: u16,
    layout: Layout,
}

impl<M: GuestMemory + Send + Sync + 'static> std::fmt::Debug for VirtioPciTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciTransport")
            .field("core", &self.core)
            .field("config", &self.config)
            .field("msix", &self.msix)
            .field("bar_size", &format_args!("{:#x}", self.layout.bar_size))
            .finish()
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioTransport<M> for VirtioPciTransport<M> {
    fn core(&self) -> &TransportCore<M> {
        &self.core
    }

    fn core_mut(&mut self) -> &mut TransportCore<M> {
        &mut self.core
    }
}

/// The body (after ID and next pointer) of a virtio vendor capability.
fn vendor_capability(cfg: u8, offset: u64, length: u64, extra: Option<[u8; 4]>) -> Vec<u8> {
    let cap_len = if extra.is_some() { 20 } else { 16 };
    let mut body = vec![cap_len, cfg, VIRTIO_PCI_BAR, 0, 0, 0];
    // The layout keeps every offset and length far below 4 GiB.
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    if let Some(extra) = extra {
        body.extend_from_slice(&extra);
    }
    body
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioPciTransport<M> {
    /// Wraps `device`, which will access its rings and buffers through
    /// `mem` (guest-physical or IOMMU-translated, per the DMA contract) and
    /// interrupt through MSI-X vectors delivered by `msix_backend`
    /// ([`crate::pci::SignalMsi`] over `KVM_SIGNAL_MSI`, for instance).
    ///
    /// `dma_access` is the device's DMA path: it decides whether the
    /// transport offers `VIRTIO_F_ACCESS_PLATFORM` and whether the driver
    /// must accept it for `FEATURES_OK` to stick.
    pub fn new(
        device: Box<dyn VirtioDevice<M>>,
        mem: Arc<M>,
        msix_backend: Arc<dyn MsixBackend>,
        dma_access: DmaAccess,
    ) -> Result<Self, TransportError> {
        let device_type = device.device_type();
        let label = device_name(device_type);
        let queues = device.queue_max_sizes().len().min(MAX_QUEUES);
        let pci_error = |source| TransportError::Pci { label: label.clone(), source };
        // At most MAX_QUEUES + 1 = 2048 vectors (more queues fail below).
        let msix = Arc::new(MsixVectors::new((queues + 1) as u16, msix_backend).map_err(pci_error)?);
        let interrupt = Arc::new(PciInterrupt {
            isr: AtomicU8::new(0),
            config_generation: AtomicU8::new(0),
            config_vector: AtomicU16::new(VIRTIO_MSI_NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(VIRTIO_MSI_NO_VECTOR)).collect(),
            msix: msix.clone(),
        });
        let core = TransportCore::new(device, mem, interrupt.clone(), dma_access, MAX_QUEUES)?;
        let layout = Layout::new(queues, &msix);
        // Virtio device IDs that fit a PCI device ID (all of them do).
        let device_id = VIRTIO_PCI_DEVICE_ID_BASE.wrapping_add(device_type as u16);
        let mut config = PciConfigSpace::new(PciIds {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id,
            revision: VIRTIO_PCI_REVISION,
            class_code: class_code(device_type),
            // 4.1.2.1: informational for a non-transitional device, at
            // least 0x40.
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: device_id,
        });
        config
            .add_bar(PciBar {
                index: VIRTIO_PCI_BAR,
                size: layout.bar_size,
                kind: BarKind::Memory64,
                prefetchable: false,
            })
            .map_err(pci_error)?;
        let caps = [
            vendor_capability(cfg_type::COMMON, COMMON_CFG_OFFSET, REGION_SIZE, None),
            vendor_capability(
                cfg_type::NOTIFY,
                NOTIFY_CFG_OFFSET,
                layout.notify_size,
                Some(NOTIFY_OFF_MULTIPLIER.to_le_bytes()),
            ),
            vendor_capability(cfg_type::ISR, ISR_CFG_OFFSET, REGION_SIZE, None),
            vendor_capability(cfg_type::DEVICE, DEVICE_CFG_OFFSET, REGION_SIZE, None),
        ];
        for cap in caps {
            config.add_capability(PCI_CAP_ID_VNDR, &cap, &[]).map_err(pci_error)?;
        }
        // bar, offset, length and pci_cfg_data are the driver's to write.
        let cfg_wmask =
            [0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let cfg_cap = config
            .add_capability(
                PCI_CAP_ID_VNDR,
                &vendor_capability(cfg_type::PCI, 0, 0, Some([0; 4])),
                &cfg_wmask,
            )
            .map_err(pci_error)?;
        // Offsets are far below 4 GiB.
        let msix_body =
            msix.capability(VIRTIO_PCI_BAR, layout.table as u32, VIRTIO_PCI_BAR, layout.pba as u32);
        let msix_cap = config
            .add_capability(PCI_CAP_ID_MSIX, &msix_body, &MsixVectors::CAPABILITY_WMASK)
            .map_err(pci_error)?;
        Ok(Self { core, interrupt, config, msix, msix_cap, cfg_cap, layout })
    }

    /// Size of BAR [`VIRTIO_PCI_BAR`].
    pub fn bar_size(&self) -> u64 {
        self.layout.bar_size
    }

    /// Number of MSI-X vectors (queues + 1).
    pub fn msix_vectors(&self) -> u16 {
        self.msix.count()
    }

    /// Offset in BAR [`VIRTIO_PCI_BAR`] of queue `queue`'s notify address,
    /// if there is such a queue.
    pub fn notify_offset(&self, queue: usize) -> Option<u64> {
        (queue < self.core.queues.len())
            .then(|| NOTIFY_CFG_OFFSET + queue as u64 * u64::from(NOTIFY_OFF_MULTIPLIER))
    }

    /// A vector the table has, or "no vector".
    fn checked_vector(&self, vector: u16) -> u16 {
        if vector < self.msix.count() {
            vector
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    fn selected_vector(&self) -> Option<&AtomicU16> {
        usize::try_from(self.core.queue_sel).ok().and_then(|i| self.interrupt.queue_vectors.get(i))
    }

    /// A read of the common configuration; `None` for an access that is not
    /// a field at its natural width.
    fn read_common(&self, offset: u64, len: usize) -> Option<u64> {
        let core = &self.core;
        let irq = &self.interrupt;
        let q = core.selected_queue();
        let value = match (offset, len) {
            (DEVICE_FEATURE_SELECT, 4) => u64::from(core.device_features_sel),
            (DEVICE_FEATURE, 4) => u64::from(core.device_features_bank()),
            (DRIVER_FEATURE_SELECT, 4) => u64::from(core.driver_features_sel),
            (DRIVER_FEATURE, 4) => u64::from(core.driver_features_bank()),
            (CONFIG_MSIX_VECTOR, 2) => u64::from(irq.config_vector.load(Ordering::SeqCst)),
            (NUM_QUEUES, 2) => core.queues.len() as u64,
            (DEVICE_STATUS, 1) => u64::from(core.status()),
            (CONFIG_GENERATION, 1) => u64::from(irq.config_generation.load(Ordering::SeqCst)),
            (QUEUE_SELECT, 2) => u64::from(core.queue_sel),
            (QUEUE_SIZE, 2) => q.map_or(0, |q| u64::from(q.size)),
            (QUEUE_MSIX_VECTOR, 2) => {
                u64::from(self.selected_vector().map_or(VIRTIO_MSI_NO_VECTOR, |v| v.load(Ordering::SeqCst)))
            }
            (QUEUE_ENABLE, 2) => q.map_or(0, |q| u64::from(q.ready)),
            (QUEUE_NOTIFY_OFF, 2) => q.map_or(0, |_| u64::from(core.queue_sel)),
            (QUEUE_DESC..QUEUE_ADDRESSES_END, 4 | 8) => {
                let q = q?;
                let field = match offset & !7 {
                    QUEUE_DESC => q.desc,
                    QUEUE_DRIVER => q.driver,
                    _ => q.device,
                };
                match (offset % 8, len) {
                    (0, 8) => field,
                    (0, 4) => field & 0xffff_ffff,
                    (4, 4) => field >> 32,
                    _ => return None,
                }
            }
            // queue_notif_config_data, queue_reset, admin_queue_index and
            // admin_queue_num: their features are never offered.
            (0x38 | 0x3a | 0x3c | 0x3e, 2) => 0,
            _ => return None,
        };
        Some(value)
    }

    /// A write of the common configuration; accesses that are not a field
    /// at its natural width are ignored.
    fn write_common(&mut self, offset: u64, len: usize, value: u64) {
        // Each arm uses `value` at the width it matched.
        let (v16, v32) = (value as u16, value as u32);
        match (offset, len) {
            (DEVICE_FEATURE_SELECT, 4) => self.core.device_features_sel = v32,
            (DRIVER_FEATURE_SELECT, 4) => self.core.driver_features_sel = v32,
            (DRIVER_FEATURE, 4) => self.core.write_driver_features(v32),
            (CONFIG_MSIX_VECTOR, 2) => {
                let v = self.checked_vector(v16);
                self.interrupt.config_vector.store(v, Ordering::SeqCst);
            }
            (DEVICE_STATUS, 1) => self.core.write_status(u32::from(value as u8)),
            (QUEUE_SELECT, 2) => self.core.queue_sel = u32::from(v16),
            (QUEUE_SIZE, 2) => {
                if let Some(q) = self.core.selected_queue_mut() {
                    q.size = u32::from(v16);
                }
            }
            (QUEUE_MSIX_VECTOR, 2) => {
                let v = self.checked_vector(v16);
                if let Some(slot) = self.selected_vector() {
                    slot.store(v, Ordering::SeqCst);
                }
            }
            (QUEUE_ENABLE, 2) => self.core.set_queue_ready(v16 & 1 != 0),
            (QUEUE_DESC..QUEUE_ADDRESSES_END, 4 | 8) => {
                let Some(q) = self.core.selected_queue_mut() else { return };
                let field = match offset & !7 {
                    QUEUE_DESC => &mut q.desc,
                    QUEUE_DRIVER => &mut q.driver,
                    _ => &mut q.device,
                };
                match (offset % 8, len) {
                    (0, 8) => *field = value,
                    (0, 4) => set_half(field, false, v32),
                    (4, 4) => set_half(field, true, v32),
                    _ => {}
                }
            }
            _ => {
                debug!("{}: ignored common configuration write at {offset:#x} ({len} bytes)", self.core.label)
            }
        }
    }

    /// A read of the BAR (from the bus or the PCI configuration access
    /// capability); `data` is zeroed first.
    fn bar_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((region, rel)) = self.layout.region(offset, data.len()) else { return };
        match region {
            Region::Common => {
                if let Some(v) = self.read_common(rel, data.len()) {
                    // Only widths of 1 to 8 bytes match a field.
                    data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
                }
            }
            Region::Isr => {
                // Reading the ISR clears it (4.1.4.5).
                if let (0, Some(b)) = (rel, data.first_mut()) {
                    *b = self.interrupt.isr.swap(0, Ordering::SeqCst);
                }
            }
            Region::Device => self.core.device.read_config(rel, data),
            Region::Notify => {}
            Region::MsixTable => self.msix.read_table(rel, data),
            Region::MsixPba => self.msix.read_pba(rel, data),
        }
    }

    /// A write of the BAR.
    fn bar_write(&mut self, offset: u64, data: &[u8]) {
        let Some((region, rel)) = self.layout.region(offset, data.len()) else { return };
        match region {
            Region::Common => {
                if rel < COMMON_CFG_SIZE && data.len() <= 8 {
                    let mut b = [0; 8];
                    b[..data.len()].copy_from_slice(data);
                    self.write_common(rel, data.len(), u64::from_le_bytes(b));
                }
            }
            Region::Isr | Region::MsixPba => {}
            Region::Device => self.core.device.write_config(rel, data),
            Region::Notify => {
                if rel % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 && !data.is_empty() {
                    self.core.notify(rel / u64::from(NOTIFY_OFF_MULTIPLIER));
                }
            }
            Region::MsixTable => self.msix.write_table(rel, data),
        }
    }

    /// The BAR window the PCI configuration access capability selects, if
    /// it is one the device honours: (offset, length).
    fn cfg_window(&self) -> Option<(u64, usize)> {
        let mut bar = [0];
        self.config.read(self.cfg_cap + CAP_BAR, &mut bar);
        let offset = u64::from(self.config.read_u32(self.cfg_cap + CAP_OFFSET));
        let length = self.config.read_u32(self.cfg_cap + CAP_LENGTH);
        let length = match length {
            1 | 2 | 4 => length as usize,
            _ => return None,
        };
        let fits = offset % length as u64 == 0 && offset + length as u64 <= self.layout.bar_size;
        (bar[0] == VIRTIO_PCI_BAR && fits).then_some((offset, length))
    }
}

impl<M: GuestMemory + Send + Sync + 'static> PciDevice for VirtioPciTransport<M> {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        let data_reg = self.cfg_cap + CAP_EXTRA;
        if overlaps(offset, data.len(), data_reg, 4) {
            if let Some((bar_offset, length)) = self.cfg_window() {
                let mut buf = [0; 4];
                self.bar_read(bar_offset, &mut buf[..length]);
                self.config.set_bytes(data_reg, &buf);
            }
        }
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        if overlaps(offset, data.len(), self.msix_cap + MSIX_CONTROL, 2) {
            self.msix.set_control(self.config.read_u16(self.msix_cap + MSIX_CONTROL));
        }
        let data_reg = self.cfg_cap + CAP_EXTRA;
        if overlaps(offset, data.len(), data_reg, 4) {
            if let Some((bar_offset, length)) = self.cfg_window() {
                let mut buf = [0; 4];
                self.config.read(data_reg, &mut buf);
                self.bar_write(bar_offset, &buf[..length]);
            }
        }
    }

    fn bars(&self) -> Vec<PciBar> {
        self.config.bars()
    }

    fn read_bar(&mut self, index: u8, offset: u64, data: &mut [u8]) {
        if index == VIRTIO_PCI_BAR {
            self.bar_read(offset, data);
        } else {
            data.fill(0);
        }
    }

    fn write_bar(&mut self, index: u8, offset: u64, data: &[u8]) {
        if index == VIRTIO_PCI_BAR {
            self.bar_write(offset, data);
        }
    }
}
