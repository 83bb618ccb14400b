//! [`VtdUnit`]: one emulated remapping unit, its register file (VT-d 4.x,
//! chapter 11) and the commands its registers carry: root table pointer,
//! translation enable, queued invalidation (6.5.2) and register-based
//! invalidation (6.5.1).
//!
//! # Register accesses
//!
//! 32- and 64-bit accesses, naturally aligned; a 64-bit register may be
//! accessed as two 32-bit halves (Linux reads some that way), and a
//! command in one (CCMD.ICC, IOTLB.IVT, bit 63) runs when the half holding
//! it is written. Other sizes and misaligned accesses read as zero and
//! are ignored. Reserved and read-only registers read as the spec says and
//! ignore writes.
//!
//! # Global command (11.4.4)
//!
//! Each command bit of a GCMD write is compared with its status: SRTP
//! latches RTADDR (and sets RTPS), TE and QIE switch translation and the
//! invalidation queue on or off, and GSTS shows the result at once (every
//! operation completes within the write). Software is to change one bit
//! per write; changing several runs each, in that order. Switching
//! translation, or latching a root table, drops every cached translation
//! and context entry.
//!
//! # Invalidation queue
//!
//! Processed within the write that moves the tail (or that enables the
//! queue, or that clears FSTS.IQE), from IQH to IQT, at most one queue's
//! worth of descriptors. A tail beyond the queue, a descriptor that cannot
//! be read, an unsupported type or a set reserved field stops the queue
//! with FSTS.IQE (and the fault event), IQH on the offending descriptor and
//! IQERCD.IQEI saying why; nothing of that descriptor is done. Software
//! fixes it and clears IQE to resume, as 6.5.2.10 says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::config::VtdConfig;
use crate::endpoint::{EndpointState, VtdEndpoint};
use crate::fault_log::{FaultLog, FaultRecord};
use crate::interrupt::FaultInterrupt;
use crate::invalidation::{self, ContextScope, Descriptor, IotlbScope, QueueError};
use crate::registers::*;
use crate::stats::{Counters, VtdStats};
use crate::sync::{lock, read, write};

/// What translation reads: whether it is on and the latched root table.
#[derive(Debug, Default)]
pub(crate) struct Translation {
    pub(crate) enabled: bool,
    /// The legacy-mode root table; `None` before SRTP or when the latched
    /// RTADDR asks for another translation table mode (every translation
    /// then faults with reason 8h).
    pub(crate) root: Option<u64>,
}

/// The register file.
#[derive(Debug)]
struct Registers {
    gsts: u32,
    rtaddr: u64,
    ccmd: u64,
    faults: FaultLog,
    iqh: u64,
    iqt: u64,
    iqa: u64,
    ics: u32,
    iectl_masked: bool,
    iectl_pending: bool,
    iedata: u32,
    ieaddr: u32,
    ieuaddr: u32,
    iqercd: u64,
    iva: u64,
    iotlb: u64,
}

impl Registers {
    fn new() -> Self {
        Self {
            gsts: 0,
            rtaddr: 0,
            ccmd: 0,
            faults: FaultLog::new(),
            iqh: 0,
            iqt: 0,
            iqa: 0,
            ics: 0,
            // IECTL.IM is 1 at reset (11.4.7.8).
            iectl_masked: true,
            iectl_pending: false,
            iedata: 0,
            ieaddr: 0,
            ieuaddr: 0,
            iqercd: 0,
            iva: 0,
            iotlb: 0,
        }
    }
}

/// The unit's state shared by its register interface and its endpoints.
pub(crate) struct Shared {
    pub(crate) config: VtdConfig,
    pub(crate) mem: GuestMemoryMmap,
    interrupts: Arc<dyn FaultInterrupt>,
    registers: Mutex<Registers>,
    pub(crate) translation: RwLock<Translation>,
    endpoints: RwLock<BTreeMap<u16, Arc<EndpointState>>>,
    warned_off: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

fn is_64bit_register(block: u64) -> bool {
    matches!(block, CAP | ECAP | RTADDR | CCMD | IQH | IQT | IQA | IQERCD | IVA | IOTLB)
        || (FAULT_RECORDS..FAULT_RECORDS + 16 * FAULT_RECORD_COUNT as u64).contains(&block)
}

impl Shared {
    /// Records a translation fault and raises the fault event.
    pub(crate) fn record_fault(&self, record: FaultRecord) {
        let recorded = lock(&self.registers).faults.record(record, &self.interrupts);
        dmavm_devices::guest_log!(
            static log::Level::Warn,
            "VT-d: DMA {} by source-id {:02x}:{:02x}.{} at {:#x} faulted: reason {:#x} ({:?}){}",
            if record.write { "write" } else { "read" },
            record.source_id >> 8,
            (record.source_id >> 3) & 0x1f,
            record.source_id & 7,
            record.address,
            record.reason as u8,
            record.reason,
            if recorded { "" } else { "; fault log full (FSTS.PFO)" }
        );
    }

    /// Says once that a device DMAs while the guest has not enabled
    /// translation.
    pub(crate) fn warn_translation_off(&self, source_id: u16) {
        if !self.warned_off.swap(true, Ordering::Relaxed) {
            log::warn!(
                "VT-d: device {:02x}:{:02x}.{} accesses memory while the guest has not enabled translation (GSTS.TES = 0): its DMA passes untranslated, as on hardware; a guest without a VT-d driver (or booted without intel_iommu=on) does this. `--stats` counts these accesses",
                source_id >> 8,
                (source_id >> 3) & 0x1f,
                source_id & 7
            );
        }
    }

    /// Drops every cached context entry and translation.
    fn clear_caches(&self) {
        for ep in read(&self.endpoints).values() {
            write(&ep.cache).clear(&ep.hot);
        }
    }

    fn invalidate_context(&self, scope: ContextScope) {
        let _state = write(&self.translation);
        for ep in read(&self.endpoints).values() {
            let mut cache = write(&ep.cache);
            let covered = match scope {
                ContextScope::Global => true,
                ContextScope::Domain(d) => cache.context.map(|c| c.domain) == Some(d),
                ContextScope::Device { source_id, ignored } => {
                    ep.source_id & !ignored == source_id & !ignored
                }
            };
            if covered {
                cache.clear(&ep.hot);
                Counters::bump(&ep.counters.invalidations);
            }
        }
    }

    fn invalidate_iotlb(&self, scope: IotlbScope) {
        let _state = write(&self.translation);
        for ep in read(&self.endpoints).values() {
            let mut cache = write(&ep.cache);
            let domain = cache.context.map(|c| c.domain);
            match scope {
                IotlbScope::Global => cache.drop_translations(&ep.hot),
                IotlbScope::Domain(d) if domain == Some(d) => cache.drop_translations(&ep.hot),
                IotlbScope::Pages { domain: d, start, len } if domain == Some(d) => {
                    cache.invalidate_pages(ep.capacity(), start, len, &ep.hot)
                }
                _ => continue,
            }
            Counters::bump(&ep.counters.invalidations);
        }
    }

    fn read32(&self, r: &Registers, offset: u64) -> u32 {
        match offset {
            VER => VERSION,
            GSTS => r.gsts,
            FSTS => r.faults.fsts(),
            FECTL => r.faults.fectl(),
            FEDATA => r.faults.data,
            FEADDR => r.faults.address,
            FEUADDR => r.faults.upper_address,
            ICS => r.ics,
            IECTL => (if r.iectl_masked { EVENT_IM } else { 0 }) | if r.iectl_pending { EVENT_IP } else { 0 },
            IEDATA => r.iedata,
            IEADDR => r.ieaddr,
            IEUADDR => r.ieuaddr,
            // No protected memory regions (CAP.PLMR = PHMR = 0).
            PMEN => 0,
            // GCMD is write-only; the rest is reserved.
            _ => 0,
        }
    }

    fn read64(&self, r: &Registers, block: u64) -> u64 {
        match block {
            CAP => capability(),
            ECAP => extended_capability(&self.config),
            RTADDR => r.rtaddr,
            CCMD => r.ccmd,
            IQH => r.iqh,
            IQT => r.iqt,
            IQA => r.iqa,
            IQERCD => r.iqercd,
            IVA => r.iva,
            IOTLB => r.iotlb,
            b if is_64bit_register(b) => {
                let index = ((b - FAULT_RECORDS) / 16) as usize;
                r.faults.read_record(index, ((b - FAULT_RECORDS) / 8 % 2) as usize)
            }
            b => u64::from(self.read32(r, b)) | u64::from(self.read32(r, b + 4)) << 32,
        }
    }

    fn write32(&self, r: &mut Registers, offset: u64, value: u32) {
        match offset {
            GCMD => self.global_command(r, value),
            FSTS => {
                let had_error = r.faults.queue_error_pending();
                r.faults.write_fsts(value);
                if had_error && !r.faults.queue_error_pending() {
                    self.process_queue(r);
                }
            }
            FECTL => r.faults.write_fectl(value, &self.interrupts),
            FEDATA => r.faults.data = value,
            FEADDR => r.faults.address = value & !0b11,
            FEUADDR => r.faults.upper_address = value,
            ICS => {
                r.ics &= !(value & ICS_IWC);
                if r.ics & ICS_IWC == 0 {
                    r.iectl_pending = false;
                }
            }
            IECTL => {
                r.iectl_masked = value & EVENT_IM != 0;
                if !r.iectl_masked && r.iectl_pending {
                    r.iectl_pending = false;
                    self.send_completion(r);
                }
            }
            IEDATA => r.iedata = value,
            IEADDR => r.ieaddr = value & !0b11,
            IEUADDR => r.ieuaddr = value,
            // PMEN and the reserved and read-only ones.
            _ => {}
        }
    }

    /// The stored value a partial write of `block` merges into: zero for
    /// the fault records, whose F bit is write-1-to-clear.
    fn merge_base(&self, r: &Registers, block: u64) -> u64 {
        match block {
            RTADDR | CCMD | IQT | IQA | IVA | IOTLB => self.read64(r, block),
            _ => 0,
        }
    }

    fn write64(&self, r: &mut Registers, block: u64, value: u64) {
        match block {
            RTADDR => r.rtaddr = value,
            CCMD => self.context_command(r, value),
            IQT => {
                r.iqt = value & IQ_OFFSET;
                self.process_queue(r);
            }
            IQA => r.iqa = value & (IQA_ADDRESS | IQA_QS),
            IVA => r.iva = value & !0xf80,
            IOTLB => self.iotlb_command(r, value),
            b if is_64bit_register(b) && b >= FAULT_RECORDS && (b - FAULT_RECORDS) / 8 % 2 == 1 => {
                r.faults.write_record_high(((b - FAULT_RECORDS) / 16) as usize, value)
            }
            // CAP, ECAP, IQH, IQERCD, the records' low halves: read-only.
            _ => {}
        }
    }

    fn global_command(&self, r: &mut Registers, value: u32) {
        if value & GCMD_SRTP != 0 {
            let mut state = write(&self.translation);
            let legacy = (r.rtaddr >> RTADDR_TTM_SHIFT) & 0b11 == 0;
            state.root = legacy.then_some(r.rtaddr & RTADDR_ADDRESS);
            if !legacy {
                dmavm_devices::guest_log!(static log::Level::Warn, "VT-d: root table pointer {:#x} asks for a translation table mode other than legacy, which this unit does not support: every translation faults", r.rtaddr);
            }
            self.clear_caches();
            r.gsts |= GSTS_RTPS;
        }
        let te = value & GCMD_TE != 0;
        if te != (r.gsts & GSTS_TES != 0) {
            let mut state = write(&self.translation);
            state.enabled = te;
            self.clear_caches();
            r.gsts ^= GSTS_TES;
        }
        let qie = value & GCMD_QIE != 0;
        if qie != (r.gsts & GSTS_QIES != 0) {
            r.gsts ^= GSTS_QIES;
            if qie {
                self.process_queue(r);
            } else {
                // 6.5.2: disabling the queue resets its head.
                r.iqh = 0;
            }
        }
    }

    fn context_command(&self, r: &mut Registers, value: u64) {
        let mut stored = value & !(CCMD_ICC | 0b11 << CCMD_CAIG_SHIFT);
        if value & CCMD_ICC != 0 {
            let granularity = (value >> CCMD_CIRG_SHIFT) & 0b11;
            let scope =
                invalidation::context_scope(granularity, value as u16, (value >> 16) as u16, value >> 32);
            // 6.5.1: with the queue enabled, register-based invalidation is
            // not to be used; it is then not performed (CAIG = 0).
            let done = r.gsts & GSTS_QIES == 0;
            if let (Some(scope), true) = (scope, done) {
                self.invalidate_context(scope);
                stored |= granularity << CCMD_CAIG_SHIFT;
            }
        }
        r.ccmd = stored;
    }

    fn iotlb_command(&self, r: &mut Registers, value: u64) {
        let mut stored = value & !(IOTLB_IVT | 0b11 << IOTLB_IAIG_SHIFT);
        if value & IOTLB_IVT != 0 {
            let granularity = (value >> IOTLB_IIRG_SHIFT) & 0b11;
            let domain = (value >> IOTLB_DID_SHIFT) as u16;
            let scope = invalidation::iotlb_scope(granularity, domain, r.iva & !0xfff, r.iva & 0x3f);
            let done = r.gsts & GSTS_QIES == 0;
            if let (Some(scope), true) = (scope, done) {
                self.invalidate_iotlb(scope);
                stored |= granularity << IOTLB_IAIG_SHIFT;
            }
        }
        r.iotlb = stored;
    }

    fn send_completion(&self, r: &Registers) {
        let address = u64::from(r.ieuaddr) << 32 | u64::from(r.ieaddr);
        self.interrupts.send_msi(address, r.iedata);
    }

    fn queue_error(&self, r: &mut Registers, error: QueueError, head: u64) {
        r.iqh = head;
        r.iqercd = error as u64;
        r.faults.queue_error(&self.interrupts);
        dmavm_devices::guest_log!(static log::Level::Warn, "VT-d: invalidation queue error {error:?} at offset {head:#x}: queue stopped (FSTS.IQE)");
    }

    /// Runs the descriptors from IQH to IQT.
    fn process_queue(&self, r: &mut Registers) {
        if r.gsts & GSTS_QIES == 0 || r.faults.queue_error_pending() {
            return;
        }
        let size = 0x1000u64 << (r.iqa & IQA_QS);
        let base = r.iqa & IQA_ADDRESS;
        let mut head = r.iqh & IQ_OFFSET;
        if r.iqt >= size {
            self.queue_error(r, QueueError::TailBeyondSize, head);
            return;
        }
        if head >= size {
            // The queue shrank under a head software left beyond it.
            head = 0;
        }
        for _ in 0..size / 16 {
            if head == r.iqt {
                break;
            }
            let mut raw = [0u64; 2];
            let fetched = base.checked_add(head).is_some_and(|at| {
                raw.iter_mut().enumerate().all(|(i, w)| {
                    self.mem.read_obj::<u64>(GuestAddress(at + 8 * i as u64)).map(|v| *w = v).is_ok()
                })
            });
            if !fetched {
                return self.queue_error(r, QueueError::Fetch, head);
            }
            match invalidation::decode(raw) {
                Ok(descriptor) => self.run(r, descriptor),
                Err(error) => return self.queue_error(r, error, head),
            }
            head = (head + 16) % size;
        }
        r.iqh = head;
    }

    fn run(&self, r: &mut Registers, descriptor: Descriptor) {
        match descriptor {
            Descriptor::Context(scope) => self.invalidate_context(scope),
            Descriptor::Iotlb(scope) => self.invalidate_iotlb(scope),
            Descriptor::Wait { status, interrupt } => {
                if let Some((address, data)) = status {
                    if self.mem.write_obj(data, GuestAddress(address)).is_err() {
                        dmavm_devices::guest_log!(static log::Level::Warn, "VT-d: invalidation wait status address {address:#x} is outside guest memory");
                    }
                }
                if interrupt && r.ics & ICS_IWC == 0 {
                    r.ics |= ICS_IWC;
                    if r.iectl_masked {
                        r.iectl_pending = true;
                    } else {
                        self.send_completion(r);
                    }
                }
            }
        }
    }
}

/// One emulated VT-d remapping unit.
#[derive(Debug, Clone)]
pub struct VtdUnit {
    shared: Arc<Shared>,
}

impl VtdUnit {
    /// A unit in its reset state (translation off, no root table, queue
    /// off), translating for device models through `guest_memory` and
    /// raising its interrupts through `interrupts`.
    pub fn new(
        config: VtdConfig,
        guest_memory: GuestMemoryMmap,
        interrupts: Arc<dyn FaultInterrupt>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                mem: guest_memory,
                interrupts,
                registers: Mutex::new(Registers::new()),
                translation: RwLock::new(Translation::default()),
                endpoints: RwLock::new(BTreeMap::new()),
                warned_off: AtomicBool::new(false),
            }),
        }
    }

    /// The unit's configuration.
    pub fn config(&self) -> &VtdConfig {
        &self.shared.config
    }

    /// The `vm_memory::Iommu` of `source_id` (a PCI requester ID), created
    /// on first use; every call for one source ID shares its caches and
    /// counters.
    pub fn endpoint(&self, source_id: u16) -> VtdEndpoint {
        let existing = read(&self.shared.endpoints).get(&source_id).cloned();
        let state = existing.unwrap_or_else(|| {
            write(&self.shared.endpoints)
                .entry(source_id)
                .or_insert_with(|| Arc::new(EndpointState::new(source_id, self.shared.config.iotlb_entries)))
                .clone()
        });
        VtdEndpoint { shared: self.shared.clone(), state }
    }

    /// The counters of every source ID handed out by [`Self::endpoint`],
    /// by source ID.
    pub fn stats(&self) -> Vec<VtdStats> {
        read(&self.shared.endpoints).values().map(|ep| ep.stats()).collect()
    }

    /// A register read at `offset` into the register page: `data` is 4 or
    /// 8 bytes, naturally aligned (anything else reads as zero).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len() as u64;
        if !matches!(len, 4 | 8) || offset % len != 0 || offset >= REGISTER_SPACE {
            return;
        }
        let block = offset & !7;
        let r = lock(&self.shared.registers);
        let value = self.shared.read64(&r, block).to_le_bytes();
        let at = (offset - block) as usize;
        data.copy_from_slice(&value[at..at + data.len()]);
    }

    /// A register write at `offset` into the register page: `data` is 4 or
    /// 8 bytes, naturally aligned (anything else is ignored).
    pub fn write(&self, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        if !matches!(len, 4 | 8) || offset % len != 0 || offset >= REGISTER_SPACE {
            return;
        }
        let block = offset & !7;
        let shared = &*self.shared;
        let mut r = lock(&shared.registers);
        let mut bytes = [0u8; 8];
        let at = (offset - block) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        if is_64bit_register(block) {
            let mask = if len == 8 { u64::MAX } else { 0xffff_ffffu64 << (8 * at) };
            let merged = (shared.merge_base(&r, block) & !mask) | (value & mask);
            shared.write64(&mut r, block, merged);
        } else {
            if at == 0 {
                shared.write32(&mut r, block, value as u32);
            }
            if at == 4 || len == 8 {
                shared.write32(&mut r, block + 4, (value >> 32) as u32);
            }
        }
    }
}
