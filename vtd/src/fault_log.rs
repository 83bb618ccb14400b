//! Primary fault logging (VT-d 4.x, 7.2.1) and the fault event (7.3):
//! the fault recording registers, FSTS and FECTL.
//!
//! The log is a ring of [`FAULT_RECORD_COUNT`] records. A fault goes to the
//! record after the last one written; if that record still holds a fault
//! software has not cleared (F = 1), the fault is dropped and FSTS.PFO is
//! set: the log never grows, whatever the guest does.
//!
//! The fault event interrupt is raised when a fault condition appears
//! while none was pending (PPF, PFO, IQE clear before): FECTL.IP is set,
//! and the message is sent at once unless FECTL.IM masks it, in which case
//! it is sent when software unmasks it with IP still set.

use std::sync::Arc;

use crate::interrupt::FaultInterrupt;
use crate::registers::{
    EVENT_IM, EVENT_IP, FAULT_RECORD_COUNT, FSTS_FRI_SHIFT, FSTS_ICE, FSTS_IQE, FSTS_ITE, FSTS_PFO, FSTS_PPF,
};
use crate::tables::FaultReason;

/// One recorded fault (11.4.14, Fault Recording Registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FaultRecord {
    pub(crate) source_id: u16,
    /// The faulting address (its page is what the record shows).
    pub(crate) address: u64,
    pub(crate) reason: FaultReason,
    /// The request was a write (T = 0) rather than a read (T = 1).
    pub(crate) write: bool,
}

impl FaultRecord {
    /// The record's 128 bits: FI (63:12), SID (79:64), FR (103:96),
    /// T (126), F (127).
    fn encode(&self) -> [u64; 2] {
        let lo = self.address & !0xfff;
        let t = u64::from(!self.write);
        let hi = u64::from(self.source_id) | (self.reason as u64) << 32 | t << 62 | 1 << 63;
        [lo, hi]
    }
}

/// The fault status, the fault recording registers and the fault event
/// registers.
#[derive(Debug, Default)]
pub(crate) struct FaultLog {
    records: [Option<FaultRecord>; FAULT_RECORD_COUNT],
    /// The record the next fault goes to.
    next: usize,
    /// FSTS bits software clears by writing 1: PFO, IQE (ICE, ITE never
    /// set: no device-TLB).
    status: u32,
    control_masked: bool,
    pending: bool,
    pub(crate) data: u32,
    pub(crate) address: u32,
    pub(crate) upper_address: u32,
}

impl FaultLog {
    pub(crate) fn new() -> Self {
        // FECTL.IM is 1 at reset (11.4.9.2).
        Self { control_masked: true, ..Self::default() }
    }

    fn event_conditions(&self) -> u32 {
        self.fsts() & (FSTS_PFO | FSTS_PPF | FSTS_IQE | FSTS_ICE | FSTS_ITE)
    }

    /// FSTS: PPF is the OR of the records' F bits; FRI the first pending
    /// record, oldest first.
    pub(crate) fn fsts(&self) -> u32 {
        let oldest = (0..FAULT_RECORD_COUNT)
            .map(|i| (self.next + i) % FAULT_RECORD_COUNT)
            .find(|&i| self.records[i].is_some());
        match oldest {
            Some(i) => self.status | FSTS_PPF | (i as u32) << FSTS_FRI_SHIFT,
            None => self.status,
        }
    }

    /// Software writes FSTS: 1 clears PFO and IQE (RW1C).
    pub(crate) fn write_fsts(&mut self, value: u32) {
        self.status &= !(value & (FSTS_PFO | FSTS_IQE));
    }

    /// FECTL: IM and IP.
    pub(crate) fn fectl(&self) -> u32 {
        (if self.control_masked { EVENT_IM } else { 0 }) | if self.pending { EVENT_IP } else { 0 }
    }

    pub(crate) fn write_fectl(&mut self, value: u32, interrupts: &Arc<dyn FaultInterrupt>) {
        self.control_masked = value & EVENT_IM != 0;
        if !self.control_masked && self.pending {
            self.send(interrupts);
        }
    }

    fn send(&mut self, interrupts: &Arc<dyn FaultInterrupt>) {
        self.pending = false;
        let address = u64::from(self.upper_address) << 32 | u64::from(self.address);
        interrupts.send_msi(address, self.data);
    }

    /// Raises the fault event if `before` (the conditions before the
    /// change) had none pending and there is one now.
    fn event(&mut self, before: u32, interrupts: &Arc<dyn FaultInterrupt>) {
        if before != 0 || self.event_conditions() == 0 || self.pending {
            return;
        }
        self.pending = true;
        if !self.control_masked {
            self.send(interrupts);
        }
    }

    /// Records `fault`, or sets PFO if its record is still in use.
    /// Returns whether it was recorded.
    pub(crate) fn record(&mut self, fault: FaultRecord, interrupts: &Arc<dyn FaultInterrupt>) -> bool {
        let before = self.event_conditions();
        let recorded = self.records[self.next].is_none();
        if recorded {
            self.records[self.next] = Some(fault);
            self.next = (self.next + 1) % FAULT_RECORD_COUNT;
        } else {
            self.status |= FSTS_PFO;
        }
        self.event(before, interrupts);
        recorded
    }

    /// Sets IQE (an invalidation queue error) and raises the fault event.
    pub(crate) fn queue_error(&mut self, interrupts: &Arc<dyn FaultInterrupt>) {
        let before = self.event_conditions();
        self.status |= FSTS_IQE;
        self.event(before, interrupts);
    }

    pub(crate) fn queue_error_pending(&self) -> bool {
        self.status & FSTS_IQE != 0
    }

    /// The 64-bit word `word` (0: low, 1: high) of record `index`.
    pub(crate) fn read_record(&self, index: usize, word: usize) -> u64 {
        match self.records.get(index).copied().flatten() {
            Some(r) => r.encode()[word & 1],
            None => 0,
        }
    }

    /// Software writes the high word of record `index`: F (bit 63) is RW1C,
    /// the rest read-only.
    pub(crate) fn write_record_high(&mut self, index: usize, value: u64) {
        if value & 1 << 63 != 0 {
            if let Some(r) = self.records.get_mut(index) {
                *r = None;
            }
        }
    }
}
