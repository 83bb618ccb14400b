//! Test helpers shared by the transport tests (mmio, pci): a device that
//! records what its transport does to it, and where the simulated driver
//! puts each queue's rings.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use crate::virtio::device::{Activation, DeviceError, VirtioDevice, VirtioInterrupt};

/// What a queue looked like when the device got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeenQueue {
    pub(crate) ready: bool,
    pub(crate) size: u16,
    pub(crate) desc: u64,
    pub(crate) avail: u64,
    pub(crate) used: u64,
    pub(crate) event_idx: bool,
}

/// What the transport did to a [`MockDevice`], and how the device answers.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) activations: Vec<(Vec<SeenQueue>, u64)>,
    pub(crate) resets: usize,
    pub(crate) processed: Vec<usize>,
    pub(crate) config_writes: Vec<(u64, Vec<u8>)>,
    pub(crate) interrupt: Option<Arc<dyn VirtioInterrupt>>,
    pub(crate) fail_activate: bool,
    pub(crate) fail_process: bool,
    /// What the device answers to `notify_inline`.
    pub(crate) notify_inline: bool,
}

/// A device that records every call into its [`Record`].
pub(crate) struct MockDevice {
    pub(crate) device_type: u32,
    pub(crate) features: u64,
    pub(crate) sizes: Vec<u16>,
    pub(crate) record: Arc<Mutex<Record>>,
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
        if r.fail_process {
            return Err(DeviceError::Queue("bad ring".into()));
        }
        Ok(())
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
pub(crate) fn rings(i: u64) -> (u64, u64, u64) {
    let base = 0x1_0000 * (i + 1);
    (base, base + 0x1000, base + 0x2000)
}

/// Queue `i` as the device should get it: ready, on [`rings`]`(i)`.
pub(crate) fn seen(i: u64, size: u16, event_idx: bool) -> SeenQueue {
    let (desc, avail, used) = rings(i);
    SeenQueue { ready: true, size, desc, avail, used, event_idx }
}
