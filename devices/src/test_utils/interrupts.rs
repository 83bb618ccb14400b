//! An interrupt sink that records what a device signalled.

use std::sync::Mutex;

use crate::virtio::device::{InterruptKind, VirtioInterrupt};

/// Records every interrupt.
#[derive(Debug, Default)]
pub struct Interrupts {
    kinds: Mutex<Vec<InterruptKind>>,
}

impl Interrupts {
    /// How many interrupts were signalled so far.
    pub fn count(&self) -> usize {
        self.kinds.lock().unwrap().len()
    }

    /// Every interrupt signalled so far, in order.
    pub fn kinds(&self) -> Vec<InterruptKind> {
        self.kinds.lock().unwrap().clone()
    }

    /// Every interrupt signalled since the last call, in order.
    pub fn take(&self) -> Vec<InterruptKind> {
        std::mem::take(&mut *self.kinds.lock().unwrap())
    }
}

impl VirtioInterrupt for Interrupts {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        self.kinds.lock().unwrap().push(kind);
        Ok(())
    }
}
