//! Per-source-ID counters, for the VMM's `--stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one source ID (relaxed atomics: statistics,
/// nothing synchronizes on them).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) translations: AtomicU64,
    pub(crate) iotlb_misses: AtomicU64,
    pub(crate) context_misses: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) untranslated: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of one source ID's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VtdStats {
    /// The source ID (PCI requester ID: bus << 8 | device << 3 | function).
    pub source_id: u16,
    /// The domain of the last context entry it translated with, if any.
    pub domain: Option<u16>,
    /// Translations its memory asked for while the guest had translation
    /// enabled (`vm_memory::Iommu::translate`).
    pub translations: u64,
    /// Of those, the ones the IOTLB could not serve (a table walk).
    pub iotlb_misses: u64,
    /// Table walks that had to read the root and context entries.
    pub context_misses: u64,
    /// Context-cache and IOTLB invalidations (register or queued) that
    /// covered this source ID.
    pub invalidations: u64,
    /// Translations that failed (whether or not the fault was recorded).
    pub faults: u64,
    /// Accesses that passed untranslated because the guest had not enabled
    /// translation (GSTS.TES = 0).
    pub untranslated: u64,
}

impl VtdStats {
    /// `hot_translations`: those its threads' hot pages served.
    pub(crate) fn snapshot(source_id: u16, domain: Option<u16>, c: &Counters, hot_translations: u64) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            source_id,
            domain,
            translations: get(&c.translations).wrapping_add(hot_translations),
            iotlb_misses: get(&c.iotlb_misses),
            context_misses: get(&c.context_misses),
            invalidations: get(&c.invalidations),
            faults: get(&c.faults),
            untranslated: get(&c.untranslated),
        }
    }
}

impl std::fmt::Display for VtdStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "source-id {:02x}:{:02x}.{}: domain ",
            self.source_id >> 8,
            (self.source_id >> 3) & 0x1f,
            self.source_id & 7
        )?;
        match self.domain {
            Some(d) => write!(f, "{d}")?,
            None => write!(f, "none")?,
        }
        write!(
            f,
            ", {} translations, {} IOTLB misses, {} context-cache misses, {} invalidations, {} faults, {} untranslated (translation off)",
            self.translations,
            self.iotlb_misses,
            self.context_misses,
            self.invalidations,
            self.faults,
            self.untranslated
        )
    }
}
