//! Per-endpoint counters, for the VMM's `--stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one endpoint (relaxed atomics: they are statistics,
/// nothing synchronizes on them).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) map_requests: AtomicU64,
    pub(crate) unmap_requests: AtomicU64,
    /// Translations not served by a thread's hot pages (those are counted
    /// by the endpoint's `HotPageSource`).
    pub(crate) translations: AtomicU64,
    pub(crate) iotlb_misses: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) attach_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter back to zero: a device arriving at the endpoint starts
    /// with counters of its own.
    pub(crate) fn reset(&self) {
        for c in [
            &self.map_requests,
            &self.unmap_requests,
            &self.translations,
            &self.iotlb_misses,
            &self.faults,
            &self.attach_refused,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A snapshot of one endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// The endpoint ID.
    pub endpoint: u32,
    /// The domain it is attached to now, if any.
    pub domain: Option<u32>,
    /// MAP requests addressed to its domain while it was attached to it
    /// (rejected ones included).
    pub map_requests: u64,
    /// UNMAP requests addressed to its domain while it was attached to it
    /// (rejected ones included).
    pub unmap_requests: u64,
    /// Translations its memory asked for (`vm_memory::Iommu::translate`).
    pub translations: u64,
    /// Translations the IOTLB could not serve (hits are `translations -
    /// iotlb_misses`).
    pub iotlb_misses: u64,
    /// Translations that failed and were reported as faults.
    pub faults: u64,
    /// ATTACH requests refused because the domain holds endpoints of the
    /// other coherency (`MixedCoherency::Reject`).
    pub attach_refused: u64,
}

impl EndpointStats {
    /// `hot_translations`: those its threads' hot pages served.
    pub(crate) fn snapshot(endpoint: u32, domain: Option<u32>, c: &Counters, hot_translations: u64) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            endpoint,
            domain,
            map_requests: get(&c.map_requests),
            unmap_requests: get(&c.unmap_requests),
            translations: get(&c.translations).wrapping_add(hot_translations),
            iotlb_misses: get(&c.iotlb_misses),
            faults: get(&c.faults),
            attach_refused: get(&c.attach_refused),
        }
    }
}

impl std::fmt::Display for EndpointStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "endpoint {:#x}: domain ", self.endpoint)?;
        match self.domain {
            Some(d) => write!(f, "{d}")?,
            None => write!(f, "none")?,
        }
        write!(
            f,
            ", {} map, {} unmap, {} translations, {} IOTLB misses, {} faults, {} refused attach",
            self.map_requests,
            self.unmap_requests,
            self.translations,
            self.iotlb_misses,
            self.faults,
            self.attach_refused
        )
    }
}
