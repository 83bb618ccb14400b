//! One endpoint: a device in the IOMMU's scope, with its IOTLB and its
//! counters. How the IOTLB is filled and kept consistent with the IOMMU
//! state is described in [`crate::endpoint_iommu`].
//!
//! An update changes the snapshot in place when no iterator shares it
//! (the common case: iterators live for one access). Otherwise, since an
//! `Iotlb` cannot be copied, the update starts a fresh, empty snapshot:
//! dropping cached entries is always correct for a cache, and costs only
//! misses.

use std::sync::{Arc, RwLock};

use vm_memory::{GuestAddress, Iotlb, Permissions};

use crate::stats::Counters;
use crate::sync::write;

/// One endpoint's translation cache and counters.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) id: u32,
    pub(crate) iotlb: RwLock<Arc<Iotlb>>,
    pub(crate) counters: Counters,
}

impl Endpoint {
    pub(crate) fn new(id: u32) -> Self {
        Self { id, iotlb: RwLock::new(Arc::new(Iotlb::new())), counters: Counters::default() }
    }

    /// Drops every cached translation.
    pub(crate) fn invalidate_all(&self) {
        *write(&self.iotlb) = Arc::new(Iotlb::new());
    }

    /// Drops the cached translations of `[start, end]`.
    pub(crate) fn invalidate(&self, start: u64, end: u64) {
        match end.checked_sub(start).and_then(|l| l.checked_add(1)).and_then(|l| usize::try_from(l).ok()) {
            Some(len) if end < u64::MAX => {
                update(&mut write(&self.iotlb), |tlb| tlb.invalidate_mapping(GuestAddress(start), len))
            }
            // Not representable as a half-open range: be safe.
            _ => self.invalidate_all(),
        }
    }
}

impl Endpoint {
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
        update(&mut write(&self.iotlb), |tlb| {
            let _ = tlb.set_mapping(GuestAddress(start), GuestAddress(phys), len, permissions);
        });
    }
}

/// Applies `change` to the IOTLB snapshot in place, or, while an iterator
/// still shares it, to a fresh empty one that replaces it (see the module
/// documentation).
pub(crate) fn update(tlb: &mut Arc<Iotlb>, change: impl FnOnce(&mut Iotlb)) {
    if Arc::get_mut(tlb).is_none() {
        *tlb = Arc::new(Iotlb::new());
    }
    if let Some(own) = Arc::get_mut(tlb) {
        change(own);
    }
}
