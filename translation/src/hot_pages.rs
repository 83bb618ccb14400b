//! Hot pages: each thread's cache of whole 4 KiB page translations, in
//! front of the endpoints' shared IOTLBs, for the small accesses a device
//! model repeats on every request (ring indexes and entries, descriptors,
//! request headers and statuses).
//!
//! A hit in an endpoint's shared IOTLB (the virtio-iommu's or VT-d's)
//! costs a lock, a reference count on its snapshot and a count of the
//! translation, each an atomic operation on memory the IOMMU's and other
//! devices' threads share; that, not the lookup, is most of its cost. A
//! hot page is the thread's own: one atomic load (the endpoint's
//! [`InvalidationLog`] number) checks it is current, and
//! [`crate::TranslatedMemory`] reaches the page's guest-physical address
//! with no `Iotlb` at all.
//!
//! # Consistency
//!
//! A hot page is copied from a translation the shared IOTLB served after
//! the log's number was read, and tagged with that number. Before a thread uses its hot pages of an endpoint, it catches up
//! with the endpoint's log: the pages overlapping a removal recorded since
//! are dropped, all of them if the log no longer reaches back that far; a
//! page copied while a removal was recorded is not kept. So a hot page is
//! never used after a request that removed its translation completed, as
//! for the shared IOTLB, and a removal elsewhere (Linux unmaps every
//! buffer after its request) costs the pages nothing. An IOTLB that drops
//! entries only to stay within its capacity removes no translation: the
//! guest's tables still hold them, and its hot pages stay.
//!
//! # Bounded size
//!
//! [`SLOTS`] pages per endpoint, for at most [`ENDPOINTS`] endpoints per
//! thread (the least recently added goes); a full set of slots replaces
//! pages in "clock" order, sparing those used since the hand last passed,
//! so a queue's ring pages, used by every request, stay while the pages of
//! single requests come and go.
//!
//! [`InvalidationLog`]: crate::invalidation_log::InvalidationLog

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use vm_memory::{GuestAddress, Iotlb, Permissions};

use crate::hot_page_source::HotPageSource;
use crate::thread_count::ThreadCount;

/// The size of a hot page: the IOMMUs' smallest page (no translation
/// splits one).
pub const PAGE: u64 = 0x1000;
/// Hot pages per endpoint and thread.
pub const SLOTS: usize = 16;
/// Endpoints per thread with hot pages.
pub const ENDPOINTS: usize = 8;
/// The largest access that makes its page hot, in bytes: virtio's ring
/// entries, descriptors, request headers and statuses are all far below.
pub const SMALL: u64 = 256;

/// One page's translation.
struct Slot {
    /// IOVA of the page.
    page: u64,
    /// The guest-physical address the page translates to, and what it
    /// allows.
    phys: u64,
    permissions: Permissions,
    /// When it was last used, on its endpoint's `clock`.
    used: u64,
}

/// One thread's hot pages of one endpoint.
struct EndpointPages {
    /// [`HotPageSource::uid`].
    endpoint: u64,
    /// Where to return `translations` when these pages go.
    owner: Weak<HotPageSource>,
    /// The translations these pages served (part of the endpoint's
    /// counters).
    translations: Arc<ThreadCount>,
    /// The number of the last removal these pages have caught up with.
    seen: u64,
    slots: Vec<Slot>,
    /// Counts the uses of its pages.
    clock: u64,
}

impl EndpointPages {
    /// Drops the pages that removals since `seen` made stale.
    fn catch_up(&mut self, ep: &HotPageSource) {
        let slots = &mut self.slots;
        match ep.invalidations().since(self.seen, |start, end| {
            slots.retain(|s| s.page > end || s.page + (PAGE - 1) < start);
        }) {
            Some(last) => self.seen = last,
            None => {
                slots.clear();
                self.seen = ep.invalidations().generation();
            }
        }
    }
}

impl Drop for EndpointPages {
    fn drop(&mut self) {
        if let Some(ep) = self.owner.upgrade() {
            ep.translations.retire(&self.translations);
        }
    }
}

thread_local! {
    static HOT: RefCell<Vec<EndpointPages>> = const { RefCell::new(Vec::new()) };
}

/// The IOVA page of a small access `[iova, end)` (at most [`SMALL`] bytes)
/// that lies in one page. Larger accesses (data buffers) are rarely
/// repeated: making their pages hot would cost more than it saves and
/// push out the ring pages. Never the last page below 2^64, whose end
/// vm-memory's `Iotlb` cannot represent (it adds without a check).
pub fn small_access_page(iova: u64, end: u64) -> Option<u64> {
    let page = iova & !(PAGE - 1);
    page.checked_add(PAGE)?;
    (end.checked_sub(iova)? <= SMALL && end - page <= PAGE).then_some(page)
}

/// Runs `f` on this thread's hot pages of `ep`, caught up with its log;
/// `None` if the thread has none (and `add` is false) or is exiting.
fn with_pages<T>(
    ep: &Arc<HotPageSource>,
    add: bool,
    f: impl FnOnce(&mut EndpointPages) -> Option<T>,
) -> Option<T> {
    HOT.try_with(|hot| {
        // Nothing below calls out while borrowed; a failed borrow would be
        // a bug, and costs only the cache.
        let mut hot = hot.try_borrow_mut().ok()?;
        let index = match hot.iter().position(|p| p.endpoint == ep.uid) {
            Some(i) => i,
            None if add => {
                if hot.len() == ENDPOINTS {
                    hot.remove(0);
                }
                let seen = ep.invalidations().generation();
                hot.push(EndpointPages {
                    endpoint: ep.uid,
                    owner: Arc::downgrade(ep),
                    translations: ep.translations.add(),
                    seen,
                    slots: Vec::new(),
                    clock: 0,
                });
                hot.len() - 1
            }
            None => return None,
        };
        let pages = hot.get_mut(index)?;
        if pages.seen != ep.invalidations().generation() {
            pages.catch_up(ep);
        }
        f(pages)
    })
    .ok()
    .flatten()
}

/// The guest-physical address of a small access (`length` bytes at
/// `iova`, within one page) that this thread's hot pages of `ep`
/// translate with `access` allowed; the translation is counted. What
/// [`crate::TranslatedMemory`] answers a small access with, without
/// building an iterator over an `Iotlb`; `None` sends the access down the
/// endpoint's full path, which offers the page to [`insert`].
pub fn physical(ep: &Arc<HotPageSource>, iova: u64, length: usize, access: Permissions) -> Option<u64> {
    let end = iova.checked_add(u64::try_from(length).ok()?)?;
    let page = small_access_page(iova, end)?;
    lookup_physical(ep, page, access)?.checked_add(iova - page)
}

/// The guest-physical address `page` translates to, if this thread holds
/// that page hot with `access` allowed; the translation is counted.
fn lookup_physical(ep: &Arc<HotPageSource>, page: u64, access: Permissions) -> Option<u64> {
    with_pages(ep, false, |pages| {
        pages.clock = pages.clock.wrapping_add(1);
        let slot = pages.slots.iter_mut().find(|s| s.page == page && s.permissions.allow(access))?;
        slot.used = pages.clock;
        pages.translations.add_one();
        Some(slot.phys)
    })
}

/// Makes `page` hot from `snapshot`, the endpoint's IOTLB as it was after
/// its log number was `seen`, if the whole page translates to one range
/// there with `access` allowed (read-write if it allows both).
pub fn insert(ep: &Arc<HotPageSource>, seen: u64, page: u64, snapshot: &Iotlb, access: Permissions) {
    let translate = |perm| {
        let mut ranges = Iotlb::lookup(snapshot, GuestAddress(page), PAGE as usize, perm).ok()?;
        let range = ranges.next()?;
        (range.length as u64 == PAGE).then_some((range.base, perm))
    };
    let Some((phys, permissions)) = translate(Permissions::ReadWrite).or_else(|| translate(access)) else {
        return;
    };
    with_pages(ep, true, |pages| {
        // A removal since `seen` may have come before `snapshot` was taken
        // or after: the page is not trusted.
        if pages.seen != seen {
            return None;
        }
        pages.clock = pages.clock.wrapping_add(1);
        let slot = Slot { page, phys: phys.0, permissions, used: pages.clock };
        if let Some(existing) = pages.slots.iter_mut().find(|s| s.page == page) {
            *existing = slot;
        } else if pages.slots.len() < SLOTS {
            pages.slots.push(slot);
        } else if let Some(oldest) = pages.slots.iter_mut().min_by_key(|s| s.used) {
            *oldest = slot;
        }
        Some(())
    });
}

/// Whether this thread holds `page` of `ep` hot (after catching up).
pub fn holds(ep: &Arc<HotPageSource>, page: u64) -> bool {
    with_pages(ep, false, |pages| Some(pages.slots.iter().any(|s| s.page == page))).unwrap_or(false)
}

/// How many pages of `ep` this thread holds hot (after catching up).
pub fn held(ep: &Arc<HotPageSource>) -> usize {
    with_pages(ep, false, |pages| Some(pages.slots.len())).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_accesses_within_a_page_have_one_and_the_last_page_none() {
        assert_eq!(small_access_page(0x1008, 0x1010), Some(0x1000));
        assert_eq!(small_access_page(0x1f00, 0x2000), Some(0x1000));
        // Across a page boundary, or larger than SMALL: no page.
        assert_eq!(small_access_page(0x1ffc, 0x2004), None);
        assert_eq!(small_access_page(0x1010, 0x1011 + SMALL), None);
        // The last page's end, 2^64, does not fit the IOTLB's ranges.
        let top = !(PAGE - 1);
        assert_eq!(small_access_page(top, top + 8), None);
        assert_eq!(small_access_page(top - PAGE, top - PAGE + 8), Some(top - PAGE));
        // An end below the start is not an access.
        assert_eq!(small_access_page(0x1008, 0x1000), None);
    }
}
