//! [`BoundedIotlb`]: an endpoint's shared IOTLB, a `vm_memory::Iotlb`
//! handed out as an `Arc` snapshot, that never holds more than its
//! capacity.
//!
//! # Bounded size
//!
//! The guest decides how many translations exist (every mapping, every
//! distinct range touched in bypass or pass-through), so an IOTLB that
//! cached all of them would grow the VMM by one entry per mapping and
//! endpoint. A `BoundedIotlb` holds at most its capacity: when a change
//! could pass it, the IOTLB starts over empty (it is a cache: what it
//! drops is filled again on a miss), and a change that alone needs more
//! is refused. `vm_memory::Iotlb` does not say how many entries it holds,
//! so the count is a bound from what each change can add at most: an
//! insertion the range itself plus the second half of an entry it splits
//! ([`INSERT_COST`]), a removal the second half of a split
//! ([`REMOVE_COST`]).
//!
//! # Snapshots
//!
//! Translations return iterators that own a snapshot, so a device model
//! holds no lock while it accesses memory and invalidations never wait
//! for it. A change is made in place when no iterator shares the
//! snapshot (the common case: iterators live for one access); otherwise,
//! since an `Iotlb` cannot be copied, the change starts from a fresh,
//! empty one, which a cache may always do.

use std::sync::Arc;

use vm_memory::Iotlb;

/// Most entries one insertion into a `vm_memory::Iotlb` (a range map) can
/// add: the range itself and the second half of an entry it splits.
pub const INSERT_COST: usize = 2;
/// Most entries one removal can add: the second half of an entry it splits.
pub const REMOVE_COST: usize = 1;

/// What [`BoundedIotlb::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The change was made to the entries already cached.
    Kept,
    /// The IOTLB started over empty (full, or shared with an iterator),
    /// then the change was made.
    StartedOver,
    /// The change alone needs more than the capacity: nothing changed.
    TooLarge,
}

/// An IOTLB snapshot and a bound on the entries it holds.
#[derive(Debug, Default)]
pub struct BoundedIotlb {
    tlb: Arc<Iotlb>,
    /// At least the number of entries in `tlb` (see the module
    /// documentation).
    entries: usize,
}

impl BoundedIotlb {
    /// The current snapshot.
    pub fn snapshot(&self) -> &Arc<Iotlb> {
        &self.tlb
    }

    /// At least the number of entries held now.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Applies `change`, which adds at most `cost` entries, starting over
    /// empty first if the change could take the IOTLB past `capacity` or
    /// an iterator shares the snapshot.
    pub fn apply(&mut self, capacity: usize, cost: usize, change: impl FnOnce(&mut Iotlb)) -> Applied {
        if cost > capacity {
            return Applied::TooLarge;
        }
        let mut applied = Applied::Kept;
        if self.entries + cost > capacity || Arc::get_mut(&mut self.tlb).is_none() {
            self.clear();
            applied = Applied::StartedOver;
        }
        if let Some(own) = Arc::get_mut(&mut self.tlb) {
            change(own);
            self.entries += cost;
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{GuestAddress, Permissions};

    use super::*;

    fn map(tlb: &mut Iotlb, page: u64) {
        let _ =
            tlb.set_mapping(GuestAddress(page << 12), GuestAddress(page << 12), 0x1000, Permissions::Read);
    }

    fn holds(iotlb: &BoundedIotlb, page: u64) -> bool {
        Iotlb::lookup(iotlb.snapshot().as_ref(), GuestAddress(page << 12), 8, Permissions::Read).is_ok()
    }

    #[test]
    fn starts_over_instead_of_passing_its_capacity() {
        let mut iotlb = BoundedIotlb::default();
        assert_eq!(iotlb.apply(4, INSERT_COST, |t| map(t, 1)), Applied::Kept);
        assert_eq!(iotlb.apply(4, INSERT_COST, |t| map(t, 2)), Applied::Kept);
        assert_eq!(iotlb.entries(), 4);
        assert_eq!(iotlb.apply(4, INSERT_COST, |t| map(t, 3)), Applied::StartedOver);
        assert!(!holds(&iotlb, 1) && !holds(&iotlb, 2) && holds(&iotlb, 3));
        assert_eq!(iotlb.entries(), INSERT_COST);
        assert_eq!(iotlb.apply(1, INSERT_COST, |t| map(t, 4)), Applied::TooLarge);
        assert!(holds(&iotlb, 3) && !holds(&iotlb, 4));
    }

    #[test]
    fn a_shared_snapshot_is_never_changed() {
        let mut iotlb = BoundedIotlb::default();
        iotlb.apply(8, INSERT_COST, |t| map(t, 1));
        let held = iotlb.snapshot().clone();
        assert_eq!(iotlb.apply(8, INSERT_COST, |t| map(t, 2)), Applied::StartedOver);
        assert!(Iotlb::lookup(held.as_ref(), GuestAddress(1 << 12), 8, Permissions::Read).is_ok());
        assert!(Iotlb::lookup(held.as_ref(), GuestAddress(2 << 12), 8, Permissions::Read).is_err());
        assert!(holds(&iotlb, 2) && !holds(&iotlb, 1));
    }
}
