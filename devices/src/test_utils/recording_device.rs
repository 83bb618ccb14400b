//! For transport tests (mmio, pci): a device that records what its
//! transport does to it, and where the simulated driver puts each queue's
//! rings.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use crate::virtio::device::{Activation, DeviceError, VirtioDevice, VirtioInterrupt};

/// What a queue looked like when the device got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenQueue {
    /// Enabled by the driver.
    pub ready: bool,
    /// Size the driver chose.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Driver area (available ring) address.
    pub avail: u64,
    /// Device area (used ring) address.
    pub used: u64,
    /// `VIRTIO_RING_F_EVENT_IDX` in effect.
    pub event_idx: bool,
}

/// What the transport did to a [`MockDevice`], and how the device answers.
#[derive(Default)]
pub struct Record {
    /// Each activation: the queues and the acked features.
    pub activations: Vec<(Vec<SeenQueue>, u64)>,
    /// Device resets.
    pub resets: usize,
    /// Queue indices processed, in order.
    pub processed: Vec<usize>,
    /// Configuration writes: offset and bytes.
    pub config_writes: Vec<(u64, Vec<u8>)>,
    /// The interrupt of the current activation.
    pub interrupt: Option<Arc<dyn VirtioInterrupt>>,
    /// Make `activate` fail.
    pub fail_activate: bool,
    /// Make `process_queue` fail.
    pub fail_process: bool,
    /// What the device answers to `notify_inline`.
    pub notify_inline: bool,
    /// Passes `process_queue` leaves work for (answered by `work_left`).
    pub passes_left: usize,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("activations", &self.activations)
            .field("resets", &self.resets)
            .field("processed", &self.processed)
            .field("config_writes", &self.config_writes)
            .finish_non_exhaustive()
    }
}

/// A device that records every call into its [`Record`].
#[derive(Debug)]
pub struct MockDevice {
    /// Virtio device ID it reports.
    pub device_type: u32,
    /// Features it reports.
    pub features: u64,
    /// Its queues' maximum sizes.
    pub sizes: Vec<u16>,
    /// Where its calls go.
    pub record: Arc<Mutex<Record>>,
}

impl VirtioDevice<GuestMemoryMmap> for MockDevice {
    fn device_type(&self) -> u32 {
        self.device_type
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn device_features(&self) -> u64 {
        self.features
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (offset as u8).wrapping_add(i as u8).wrapping_add(0xa0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.record.lock().unwrap().config_writes.push((offset, data.to_vec()));
    }
    fn activate(&mut self, activation: Activation<GuestMemoryMmap>) -> Result<(), DeviceError> {
        let mut r = self.record.lock().unwrap();
        let queues = activation
            .queues
            .iter()
            .map(|q: &Queue| SeenQueue {
                ready: q.ready(),
                size: q.size(),
                desc: q.desc_table(),
                avail: q.avail_ring(),
                used: q.used_ring(),
                event_idx: q.event_idx_enabled(),
            })
            .collect();
        r.activations.push((queues, activation.acked_features));
        r.interrupt = Some(activation.interrupt);
        if r.fail_activate {
            return Err(DeviceError::QueueNotReady(1));
        }
        Ok(())
    }
    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let mut r = self.record.lock().unwrap();
        r.processed.push(index);
        r.passes_left = r.passes_left.saturating_sub(1);
        if r.fail_process {
            return Err(DeviceError::Queue("bad ring".into()));
        }
        Ok(())
    }
    fn work_left(&self, _index: usize) -> bool {
        self.record.lock().unwrap().passes_left > 0
    }
    fn notify_inline(&self) -> bool {
        self.record.lock().unwrap().notify_inline
    }
    fn reset(&mut self) {
        let mut r = self.record.lock().unwrap();
        r.resets += 1;
        r.interrupt = None;
    }
}

/// Queue `i`'s rings: descriptors at 0x10000 * (i + 1), driver area 0x1000
/// above, device area 0x2000 above.
pub fn rings(i: u64) -> (u64, u64, u64) {
    let base = 0x1_0000 * (i + 1);
    (base, base + 0x1000, base + 0x2000)
}

/// Queue `i` as the device should get it: ready, on [`rings`]`(i)`.
pub fn seen(i: u64, size: u16, event_idx: bool) -> SeenQueue {
    let (desc, avail, used) = rings(i);
    SeenQueue { ready: true, size, desc, avail, used, event_idx }
}
