//! One endpoint: a device in the IOMMU's scope, with its IOTLB and its
//! counters. How the IOTLB is filled and kept consistent with the IOMMU
//! state is described in [`crate::endpoint_iommu`].
//!
//! An update changes the snapshot in place when no iterator shares it
//! (the common case: iterators live for one access). Otherwise, since an
//! `Iotlb` cannot be copied, the update starts a fresh, empty snapshot:
//! dropping cached entries is always correct for a cache, and costs only
//! misses.
//!
//! # Bounded size
//!
//! The guest decides how many translations exist (every MAP, every
//! distinct range touched in bypass mode), so an IOTLB that cached all of
//! them would grow the VMM by one entry per mapping per endpoint of the
//! domain. Each IOTLB therefore holds at most `capacity` entries (the
//! endpoint's share of [`IommuConfig::iotlb_entries`]): when a change could
//! pass it, the IOTLB starts over empty and later accesses refill it from
//! the domain's mappings on their misses. `vm_memory::Iotlb` does not say
//! how many entries it holds, so [`Cache::entries`] counts what each change
//! can add at most: an insertion one range plus the split of one existing
//! range around it (2), a removal the split of one range (1).
//!
//! [`IommuConfig::iotlb_entries`]: crate::IommuConfig::iotlb_entries

use std::sync::{Arc, RwLock};

use dmavm_translation::HotPageSource;
use vm_memory::{GuestAddress, Iotlb, Permissions};

use crate::stats::Counters;
use crate::sync::{read, write};

/// Most entries one insertion into a `vm_memory::Iotlb` (a range map) can
/// add: the range itself and the second half of an entry it splits.
pub(crate) const INSERT_COST: usize = 2;
/// Most entries one removal can add: the second half of an entry it splits.
const REMOVE_COST: usize = 1;

/// One translation to cache: IOVA, guest-physical address, length and
/// permissions.
pub(crate) type Entry = (u64, u64, usize, Permissions);

/// An IOTLB snapshot and an upper bound on the entries it holds.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) tlb: Arc<Iotlb>,
    /// At least the number of entries in `tlb` (see the module
    /// documentation).
    entries: usize,
}

impl Cache {
    /// Applies `change`, which adds at most `cost` entries, in place or to
    /// a fresh empty snapshot (see the module documentation), starting over
    /// empty first if the change could take the IOTLB past `capacity`.
    /// Returns `false`, changing nothing, when `cost` alone is above
    /// `capacity`.
    fn apply(&mut self, capacity: usize, cost: usize, change: impl FnOnce(&mut Iotlb)) -> bool {
        if cost > capacity {
            return false;
        }
        if self.entries + cost > capacity || Arc::get_mut(&mut self.tlb).is_none() {
            *self = Self::default();
        }
        if let Some(own) = Arc::get_mut(&mut self.tlb) {
            change(own);
            self.entries += cost;
        }
        true
    }
}

/// One endpoint's translation cache and counters.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) id: u32,
    pub(crate) iotlb: RwLock<Cache>,
    /// The endpoint as the threads' hot pages know it: every removal from
    /// its translations is recorded there, for caches beyond `iotlb`.
    pub(crate) hot: Arc<HotPageSource>,
    /// Most entries its IOTLB may hold.
    capacity: usize,
    pub(crate) counters: Counters,
}

impl Endpoint {
    pub(crate) fn new(id: u32, capacity: usize) -> Self {
        Self {
            id,
            iotlb: RwLock::new(Cache::default()),
            hot: Arc::new(HotPageSource::new()),
            capacity,
            counters: Counters::default(),
        }
    }

    /// The current IOTLB snapshot (the translation hit path).
    pub(crate) fn snapshot(&self) -> Arc<Iotlb> {
        read(&self.iotlb).tlb.clone()
    }

    /// At least the number of entries its IOTLB holds now; never above
    /// its capacity.
    #[cfg(test)]
    pub(crate) fn cached_entries(&self) -> usize {
        read(&self.iotlb).entries
    }

    /// Drops every cached translation.
    pub(crate) fn invalidate_all(&self) {
        let mut cache = write(&self.iotlb);
        *cache = Cache::default();
        self.hot.record_removal(0, u64::MAX);
    }

    /// Drops the cached translations of `[start, end]`.
    pub(crate) fn invalidate(&self, start: u64, end: u64) {
        match end.checked_sub(start).and_then(|l| l.checked_add(1)).and_then(|l| usize::try_from(l).ok()) {
            Some(len) if end < u64::MAX => {
                let mut cache = write(&self.iotlb);
                let done = cache.apply(self.capacity, REMOVE_COST, |tlb| {
                    tlb.invalidate_mapping(GuestAddress(start), len)
                });
                if done {
                    self.hot.record_removal(start, end);
                } else {
                    drop(cache);
                    self.invalidate_all();
                }
            }
            // Not representable as a half-open range: be safe.
            _ => self.invalidate_all(),
        }
    }

    /// Caches a mapping the driver just made (MAP), so that the device's
    /// first access through it hits: Linux maps each buffer right before
    /// handing it to the device, so filling on the first access would make
    /// every mapping cost one miss.
    pub(crate) fn prefill(&self, start: u64, end: u64, phys: u64, permissions: Permissions) {
        // A mapping of all 2^64 addresses does not fit a usize: the first
        // access fills it instead.
        let Some(len) =
            end.checked_sub(start).and_then(|l| l.checked_add(1)).and_then(|l| usize::try_from(l).ok())
        else {
            return;
        };
        let _ = self.fill(&[(start, phys, len, permissions)]);
    }

    /// Caches `entries` and returns the snapshot that holds them (taken
    /// under the same lock, so no concurrent eviction can empty it first);
    /// `None`, caching nothing, if they alone are more than the IOTLB may
    /// hold.
    pub(crate) fn fill(&self, entries: &[Entry]) -> Option<Arc<Iotlb>> {
        let cost = entries.len().saturating_mul(INSERT_COST);
        let mut cache = write(&self.iotlb);
        cache.apply(self.capacity, cost, |tlb| insert(tlb, entries)).then(|| cache.tlb.clone())
    }
}

/// Puts `entries` in `tlb`.
pub(crate) fn insert(tlb: &mut Iotlb, entries: &[Entry]) {
    for &(iova, phys, len, permissions) in entries {
        // `set_mapping` cannot fail.
        let _ = tlb.set_mapping(GuestAddress(iova), GuestAddress(phys), len, permissions);
    }
}
