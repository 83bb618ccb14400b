//! Per-endpoint counters, for the VMM's `--stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// A count only one thread adds to (translations served from its hot
/// pages): a plain load and store, where a shared counter needs an atomic
/// read-modify-write, which costs more than the rest of such a
/// translation. Others only read it.
#[derive(Debug, Default)]
pub(crate) struct ThreadCount(AtomicU64);

impl ThreadCount {
    /// Adds one; only the owning thread calls it.
    pub(crate) fn add_one(&self) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(1), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live counters of one endpoint (relaxed atomics: they are statistics,
/// nothing synchronizes on them).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) map_requests: AtomicU64,
    pub(crate) unmap_requests: AtomicU64,
    /// Translations not counted by a thread's own count.
    pub(crate) translations: AtomicU64,
    /// The threads' own translation counts, each with its value at the
    /// last reset.
    thread_translations: Mutex<Vec<(Arc<ThreadCount>, u64)>>,
    pub(crate) iotlb_misses: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) attach_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A count of translations for the calling thread alone, part of
    /// [`Counters::translations`] until [`Counters::retire`]d.
    pub(crate) fn thread_count(&self) -> Arc<ThreadCount> {
        let count = Arc::new(ThreadCount::default());
        lock(&self.thread_translations).push((count.clone(), 0));
        count
    }

    /// Moves what `count` counted into the shared counter; its thread
    /// counts no more with it.
    pub(crate) fn retire(&self, count: &Arc<ThreadCount>) {
        let mut threads = lock(&self.thread_translations);
        if let Some(i) = threads.iter().position(|(c, _)| Arc::ptr_eq(c, count)) {
            let (c, base) = threads.swap_remove(i);
            self.translations.fetch_add(c.get().wrapping_sub(base), Ordering::Relaxed);
        }
    }

    /// Every translation counted, by threads' own counts too.
    pub(crate) fn translations(&self) -> u64 {
        let threads = lock(&self.thread_translations);
        let own: u64 = threads.iter().map(|(c, base)| c.get().wrapping_sub(*base)).sum();
        self.translations.load(Ordering::Relaxed).wrapping_add(own)
    }

    /// Every counter back to zero: a device arriving at the endpoint starts
    /// with counters of its own.
    pub(crate) fn reset(&self) {
        let mut threads = lock(&self.thread_translations);
        for (count, base) in threads.iter_mut() {
            *base = count.get();
        }
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
    pub(crate) fn snapshot(endpoint: u32, domain: Option<u32>, c: &Counters) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            endpoint,
            domain,
            map_requests: get(&c.map_requests),
            unmap_requests: get(&c.unmap_requests),
            translations: c.translations(),
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
