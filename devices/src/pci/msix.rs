//! MSI-X (PCI Local Bus 3.0, 6.8.2): the vector table, the pending bit
//! array, and the seam between "vector `n` fires" and how the VMM gets the
//! message to KVM.
//!
//! [`MsixVectors`] owns the table (message address and data, per-vector
//! mask), the PBA and the capability's enable and function-mask bits. A
//! device fires a vector with [`MsixVectors::trigger`]: if MSI-X is enabled
//! and neither the function nor the vector is masked the message goes to the
//! [`MsixBackend`]; if it is masked the vector's pending bit is set, and the
//! message is sent (and the bit cleared) as soon as it is unmasked. With
//! MSI-X disabled nothing is sent and nothing becomes pending (the function
//! would use INTx, which the functions here do not have).
//!
//! The backend is where KVM delivery sits. [`SignalMsi`] sends each message
//! with `KVM_SIGNAL_MSI` through an [`MsiSink`]; a backend over GSI routes
//! and irqfds keeps one route per vector up to date from
//! [`MsixBackend::vector_changed`] and writes the vector's irqfd in
//! [`MsixBackend::deliver`]. Masking and pending bits stay here either way,
//! so devices never change.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use log::debug;

use super::PciError;
use crate::interrupt::{InterruptError, MsiMessage, MsiSink};

/// Most vectors an MSI-X table can have.
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Size of one table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Message control: MSI-X enable.
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: the vector is masked.
const VECTOR_MASKED: u32 = 1;

/// Where unmasked MSI-X messages go; implemented by the VMM.
///
/// Called with the vector table's lock held (and often the device's): an
/// implementation must never lock a device.
pub trait MsixBackend: Send + Sync {
    /// Sends vector `vector`'s message `msg` to the CPUs.
    fn deliver(&self, vector: u16, msg: MsiMessage) -> Result<(), InterruptError>;

    /// The driver changed vector `vector`'s address or data (whatever its
    /// mask says). A backend built on GSI routes updates the vector's route
    /// here; the default does nothing.
    fn vector_changed(&self, vector: u16, msg: MsiMessage) {
        let _ = (vector, msg);
    }
}

/// An [`MsixBackend`] that sends every message through an [`MsiSink`]
/// (`KVM_SIGNAL_MSI`).
#[derive(Clone)]
pub struct SignalMsi(pub Arc<dyn MsiSink>);

impl std::fmt::Debug for SignalMsi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalMsi")
    }
}

impl MsixBackend for SignalMsi {
    fn deliver(&self, _vector: u16, msg: MsiMessage) -> Result<(), InterruptError> {
        self.0.send_msi(msg)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Entry {
    /// The reset state: zero message, masked (6.8.2.9).
    const RESET: Self = Self { addr_lo: 0, addr_hi: 0, data: 0, control: VECTOR_MASKED };

    fn message(&self) -> MsiMessage {
        MsiMessage { address: (u64::from(self.addr_hi) << 32) | u64::from(self.addr_lo), data: self.data }
    }

    fn masked(&self) -> bool {
        self.control & VECTOR_MASKED != 0
    }
}

#[derive(Debug)]
struct State {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
}

impl State {
    fn pending(&self, vector: usize) -> bool {
        self.pending.get(vector / 64).is_some_and(|w| w & (1 << (vector % 64)) != 0)
    }

    fn set_pending(&mut self, vector: usize, pending: bool) {
        if let Some(w) = self.pending.get_mut(vector / 64) {
            if pending {
                *w |= 1 << (vector % 64);
            } else {
                *w &= !(1 << (vector % 64));
            }
        }
    }
}

/// The MSI-X state of one function.
pub struct MsixVectors {
    state: Mutex<State>,
    backend: Arc<dyn MsixBackend>,
    count: u16,
}

impl std::fmt::Debug for MsixVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MsixVectors")
            .field("count", &self.count)
            .field("enabled", &state.enabled)
            .field("function_masked", &state.function_masked)
            .finish_non_exhaustive()
    }
}

impl MsixVectors {
    /// A table of `count` vectors (1..=2048), all masked, MSI-X disabled.
    pub fn new(count: u16, backend: Arc<dyn MsixBackend>) -> Result<Self, PciError> {
        if count == 0 || count > MSIX_MAX_VECTORS {
            return Err(PciError::InvalidVectorCount(usize::from(count)));
        }
        let n = usize::from(count);
        let state = State {
            entries: vec![Entry::RESET; n],
            pending: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
        };
        Ok(Self { state: Mutex::new(state), backend, count })
    }

    /// Number of vectors.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Size of the table in bytes.
    pub fn table_size(&self) -> u64 {
        u64::from(self.count) * MSIX_ENTRY_SIZE
    }

    /// Size of the pending bit array in bytes (whole qwords).
    pub fn pba_size(&self) -> u64 {
        u64::from(self.count).div_ceil(64) * 8
    }

    /// The capability body after the ID and next pointer (message control,
    /// table offset/BIR, PBA offset/BIR) and its write mask (the enable and
    /// function-mask bits), for [`super::PciConfigSpace::add_capability`].
    /// Offsets must be 8-byte aligned (the low bits hold the BAR index).
    pub fn capability(&self, table_bar: u8, table_offset: u32, pba_bar: u8, pba_offset: u32) -> [u8; 10] {
        let mut body = [0; 10];
        body[0..2].copy_from_slice(&(self.count - 1).to_le_bytes());
        body[2..6].copy_from_slice(&((table_offset & !7) | u32::from(table_bar & 7)).to_le_bytes());
        body[6..10].copy_from_slice(&((pba_offset & !7) | u32::from(pba_bar & 7)).to_le_bytes());
        body
    }

    /// Write mask matching [`Self::capability`].
    pub const CAPABILITY_WMASK: [u8; 2] = [0, 0xc0];

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, consistent after every statement: a panic
        // elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether MSI-X is enabled.
    pub fn is_enabled(&self) -> bool {
        self.lock().enabled
    }

    /// The driver wrote the capability's message control register.
    pub fn set_control(&self, control: u16) {
        let mut state = self.lock();
        state.enabled = control & MSIX_CONTROL_ENABLE != 0;
        state.function_masked = control & MSIX_CONTROL_FUNCTION_MASK != 0;
        for vector in 0..self.count {
            self.deliver_pending(&mut state, vector);
        }
    }

    /// Back to the power-on state (function-level reset).
    pub fn reset(&self) {
        let mut state = self.lock();
        state.entries.iter_mut().for_each(|e| *e = Entry::RESET);
        state.pending.iter_mut().for_each(|w| *w = 0);
        state.enabled = false;
        state.function_masked = false;
    }

    /// Fires `vector`: sends its message, or marks it pending if it is
    /// masked. Does nothing if MSI-X is disabled or there is no such vector.
    pub fn trigger(&self, vector: u16) -> Result<(), InterruptError> {
        let mut state = self.lock();
        let Some(entry) = state.entries.get(usize::from(vector)).copied() else {
            debug!("MSI-X: no vector {vector}");
            return Ok(());
        };
        if !state.enabled {
            return Ok(());
        }
        if state.function_masked || entry.masked() {
            state.set_pending(usize::from(vector), true);
            return Ok(());
        }
        self.backend.deliver(vector, entry.message())
    }

    /// Sends `vector` if it is pending and no longer masked.
    fn deliver_pending(&self, state: &mut State, vector: u16) {
        let v = usize::from(vector);
        let Some(entry) = state.entries.get(v).copied() else { return };
        if !state.enabled || state.function_masked || entry.masked() || !state.pending(v) {
            return;
        }
        state.set_pending(v, false);
        if let Err(e) = self.backend.deliver(vector, entry.message()) {
            crate::guest_log!(static log::Level::Error, "MSI-X: cannot deliver pending vector {vector}: {e}");
        }
    }

    /// A read of the table at `offset`: dword or qword, naturally aligned;
    /// anything else reads as zero.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((vector, field)) = Self::table_slot(offset, data.len(), self.count) else { return };
        let state = self.lock();
        let Some(e) = state.entries.get(vector) else { return };
        let fields = [e.addr_lo, e.addr_hi, e.data, e.control];
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            if let Some(v) = fields.get(field + i) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// A write of the table at `offset`: dword or qword, naturally aligned;
    /// anything else is ignored.
    pub fn write_table(&self, offset: u64, data: &[u8]) {
        let Some((vector, field)) = Self::table_slot(offset, data.len(), self.count) else { return };
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(vector) else { return };
        let before = *entry;
        for (i, chunk) in data.chunks(4).enumerate() {
            let Ok(bytes) = <[u8; 4]>::try_from(chunk) else { return };
            let v = u32::from_le_bytes(bytes);
            match field + i {
                // Bits 1:0 of the address are read-only zero.
                0 => entry.addr_lo = v & !0x3,
                1 => entry.addr_hi = v,
                2 => entry.data = v,
                3 => entry.control = v & VECTOR_MASKED,
                _ => {}
            }
        }
        let after = *entry;
        // `vector` indexes a table of at most 2048 entries.
        let vector = vector as u16;
        if after.message() != before.message() {
            self.backend.vector_changed(vector, after.message());
        }
        self.deliver_pending(&mut state, vector);
    }

    /// A read of the PBA at `offset` (dword or qword, naturally aligned).
    /// The PBA is read-only: writes are ignored.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len() as u64;
        if !(len == 4 || len == 8) || offset % len != 0 {
            return;
        }
        let state = self.lock();
        let Some(&word) = usize::try_from(offset / 8).ok().and_then(|i| state.pending.get(i)) else {
            return;
        };
        let bytes = word.to_le_bytes();
        // `offset % 8` is 0 or 4 for an aligned access.
        let start = (offset % 8) as usize;
        data.copy_from_slice(&bytes[start..start + data.len()]);
    }

    /// The vector and first dword field an access at `offset` of `len`
    /// bytes touches, if it is a dword or qword naturally aligned access
    /// inside the table.
    fn table_slot(offset: u64, len: usize, count: u16) -> Option<(usize, usize)> {
        let len = u64::try_from(len).ok().filter(|&l| l == 4 || l == 8)?;
        if offset % len != 0 || offset >= u64::from(count) * MSIX_ENTRY_SIZE {
            return None;
        }
        let vector = usize::try_from(offset / MSIX_ENTRY_SIZE).ok()?;
        let field = usize::try_from((offset % MSIX_ENTRY_SIZE) / 4).ok()?;
        Some((vector, field))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records what was delivered.
    #[derive(Default)]
    pub(crate) struct RecordingBackend {
        pub(crate) delivered: Mutex<Vec<(u16, MsiMessage)>>,
        pub(crate) changed: Mutex<Vec<(u16, MsiMessage)>>,
    }

    impl MsixBackend for RecordingBackend {
        fn deliver(&self, vector: u16, msg: MsiMessage) -> Result<(), InterruptError> {
            self.delivered.lock().unwrap().push((vector, msg));
            Ok(())
        }
        fn vector_changed(&self, vector: u16, msg: MsiMessage) {
            self.changed.lock().unwrap().push((vector, msg));
        }
    }

    impl RecordingBackend {
        pub(crate) fn take(&self) -> Vec<(u16, MsiMessage)> {
            std::mem::take(&mut *self.delivered.lock().unwrap())
        }
    }

    fn program(m: &MsixVectors, vector: u64, addr: u64, data: u32, masked: bool) {
        let base = vector * 16;
        m.write_table(base, &addr.to_le_bytes());
        m.write_table(base + 8, &data.to_le_bytes());
        m.write_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    fn read32(m: &MsixVectors, offset: u64) -> u32 {
        let mut b = [0; 4];
        m.read_table(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn pba(m: &MsixVectors) -> u64 {
        let mut b = [0; 8];
        m.read_pba(0, &mut b);
        u64::from_le_bytes(b)
    }

    #[test]
    fn masked_vectors_pend_and_deliver_on_unmask() {
        let backend = Arc::new(RecordingBackend::default());
        let m = MsixVectors::new(3, backend.clone()).unwrap();
        assert_eq!((m.table_size(), m.pba_size()), (48, 8));
        // Reset state: every vector masked.
        assert_eq!(read32(&m, 12), 1);
        // Disabled: nothing is sent, nothing pends.
        m.trigger(0).unwrap();
        assert_eq!(pba(&m), 0);
        // Linux: enable with the function masked, program, unmask.
        m.set_control(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
        program(&m, 0, 0xfee0_0000, 0x4041, false);
        program(&m, 1, 0xfee0_1000, 0x4042, true);
        m.trigger(0).unwrap();
        assert_eq!(pba(&m), 0b1);
        assert!(backend.take().is_empty());
        m.set_control(MSIX_CONTROL_ENABLE);
        let msg0 = MsiMessage { address: 0xfee0_0000, data: 0x4041 };
        assert_eq!(backend.take(), vec![(0, msg0)]);
        assert_eq!(pba(&m), 0);
        // Per-vector mask.
        m.trigger(1).unwrap();
        m.trigger(1).unwrap();
        assert_eq!(pba(&m), 0b10);
        m.trigger(0).unwrap();
        assert_eq!(backend.take(), vec![(0, msg0)]);
        m.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(backend.take(), vec![(1, MsiMessage { address: 0xfee0_1000, data: 0x4042 })]);
        assert_eq!(pba(&m), 0);
        // The route backend heard about every message change.
        assert_eq!(backend.changed.lock().unwrap().len(), 4);
        // Out-of-range vectors are ignored.
        m.trigger(3).unwrap();
        m.trigger(u16::MAX).unwrap();
        assert!(backend.take().is_empty());
    }

    #[test]
    fn table_access_rules() {
        let backend = Arc::new(RecordingBackend::default());
        let m = MsixVectors::new(2, backend).unwrap();
        m.write_table(0, &0xfee0_0003u32.to_le_bytes());
        assert_eq!(read32(&m, 0), 0xfee0_0000);
        m.write_table(12, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&m, 12), 1);
        let mut q = [0; 8];
        m.read_table(8, &mut q);
        assert_eq!(q, [0, 0, 0, 0, 1, 0, 0, 0]);
        // Misaligned, narrow, wide and outside accesses are harmless.
        for (offset, len) in
            [(1, 4), (2, 2), (0, 1), (4, 8), (0, 16), (32, 4), (u64::MAX, 4), (u64::MAX - 7, 8)]
        {
            let mut b = vec![0xff; len];
            m.read_table(offset, &mut b);
            assert!(b.iter().all(|&x| x == 0));
            m.write_table(offset, &b);
            m.read_pba(offset, &mut b);
        }
        assert_eq!(read32(&m, 0), 0xfee0_0000);
        assert!(MsixVectors::new(0, Arc::new(RecordingBackend::default())).is_err());
        assert!(MsixVectors::new(2049, Arc::new(RecordingBackend::default())).is_err());
        let cap = m.capability(0, 0x4000, 0, 0x5000);
        assert_eq!(cap, [1, 0, 0, 0x40, 0, 0, 0, 0x50, 0, 0]);
    }
}
