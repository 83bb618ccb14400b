//! One endpoint: a device in the IOMMU's scope, with its IOTLB and its
//! counters. How the IOTLB is filled and kept consistent with the IOMMU
//! state is described in [`crate::endpoint_iommu`].
//!
//! # Bounded size
//!
//! Each IOTLB holds at most `capacity` entries (the endpoint's share of
//! [`IommuConfig::iotlb_entries`]), a [`BoundedIotlb`]: when a change
//! could pass it, the IOTLB starts over empty and later accesses refill it
//! from the domain's mappings on their misses.
//!
//! [`IommuConfig::iotlb_entries`]: crate::IommuConfig::iotlb_entries

use std::sync::{Arc, RwLock};

use dmavm_translation::bounded_iotlb::{Applied, BoundedIotlb, INSERT_COST, REMOVE_COST};
use dmavm_translation::HotPageSource;
use vm_memory::{GuestAddress, Iotlb, Permissions};

use crate::stats::Counters;
use crate::sync::{read, write};

/// One translation to cache: IOVA, guest-physical address, length and
/// permissions.
pub(crate) type Entry = (u64, u64, usize, Permissions);

/// One endpoint's translation cache and counters.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) id: u32,
    pub(crate) iotlb: RwLock<BoundedIotlb>,
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
            iotlb: RwLock::new(BoundedIotlb::default()),
            hot: Arc::new(HotPageSource::new()),
            capacity,
            counters: Counters::default(),
        }
    }

    /// The current IOTLB snapshot (the translation hit path).
    pub(crate) fn snapshot(&self) -> Arc<Iotlb> {
        read(&self.iotlb).snapshot().clone()
    }

    /// At least the number of entries its IOTLB holds now; never above
    /// its capacity.
    #[cfg(test)]
    pub(crate) fn cached_entries(&self) -> usize {
        read(&self.iotlb).entries()
    }

    /// Drops every cached translation.
    pub(crate) fn invalidate_all(&self) {
        write(&self.iotlb).clear();
        self.hot.record_removal(0, u64::MAX);
    }

    /// Drops the cached translations of `[start, end]`.
    pub(crate) fn invalidate(&self, start: u64, end: u64) {
        match end.checked_sub(start).and_then(|l| l.checked_add(1)).and_then(|l| usize::try_from(l).ok()) {
            Some(len) if end < u64::MAX => {
                let mut cache = write(&self.iotlb);
                let applied = cache.apply(self.capacity, REMOVE_COST, |tlb| {
                    tlb.invalidate_mapping(GuestAddress(start), len)
                });
                if applied != Applied::TooLarge {
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
        let applied = cache.apply(self.capacity, cost, |tlb| insert(tlb, entries));
        (applied != Applied::TooLarge).then(|| cache.snapshot().clone())
    }
}

/// Puts `entries` in `tlb`.
pub(crate) fn insert(tlb: &mut Iotlb, entries: &[Entry]) {
    for &(iova, phys, len, permissions) in entries {
        // `set_mapping` cannot fail.
        let _ = tlb.set_mapping(GuestAddress(iova), GuestAddress(phys), len, permissions);
    }
}
