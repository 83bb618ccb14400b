//! [`VtdEndpoint`]: the `vm_memory::Iommu` through which the device model
//! of one source ID reaches guest memory, with that source ID's context
//! cache entry and IOTLB.
//!
//! # Caches
//!
//! Each source ID caches its context entry (the context cache, keyed by
//! source ID) and the pages its accesses walked, tagged with that entry's
//! domain (the IOTLB, keyed by domain and page). The IOTLB is a
//! `vm_memory::Iotlb` shared as an `Arc` snapshot, so a hit is a read
//! lock, a reference count and the lookup, and the iterator handed to the
//! device model owns its snapshot. In front of it, each thread keeps the
//! 4 KiB pages of the small accesses it repeats (ring entries,
//! descriptors, headers, statuses) hot ([`dmavm_translation::hot_pages`]):
//! [`VtdMemory`](crate::VtdMemory) answers those from the page with no lock
//! and no atomic read-modify-write. An IOTLB never holds more than its
//! capacity: a fill that would pass it starts over empty (it is a cache;
//! what is dropped is walked again on a miss), and an access needing more
//! pages than the capacity is translated without being cached.
//!
//! Dropping a cached context entry drops the IOTLB with it, so an IOTLB
//! with entries always knows its domain; and a page-selective
//! invalidation of an IOTLB that holds large pages drops the whole 1 GiB
//! around the pages, so part of a large page is never left behind. Both
//! drop more than the guest asked, which a cache may always do.
//!
//! # Consistency
//!
//! Caches are filled while the unit's translation state is read-locked and
//! invalidated while it is write-locked, so a translation the guest
//! invalidated is never served to an access that starts after the
//! invalidation completed. Every removal (a context-cache or IOTLB
//! invalidation, a new root table, translation turned on or off) is also
//! recorded in the source ID's `HotPageSource`, and the threads' hot pages
//! drop what it overlaps before their next use; the same range a large
//! page widens the IOTLB's removal to. Only translated accesses make pages
//! hot (with translation off, accesses are counted apart). Lock order: registers, translation state,
//! endpoints, one endpoint's cache.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use dmavm_translation::bounded_iotlb::{Applied, BoundedIotlb, INSERT_COST, REMOVE_COST};
use dmavm_translation::{hot_pages, HotPageSource, TranslatingEndpoint};
use vm_memory::iommu::{Error as IommuTranslateError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, Iommu, Iotlb, Permissions};

use crate::fault_log::FaultRecord;
use crate::stats::{Counters, VtdStats};
use crate::sync::{read, write};
use crate::tables::{self, Context, ContextKind, FaultReason, Page, WalkFault};
use crate::unit::Shared;

/// Untranslated and pass-through accesses are cached 1 GiB at a time.
const IDENTITY_CHUNK: u64 = 1 << 30;

/// One source ID's caches.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) context: Option<Context>,
    pub(crate) iotlb: BoundedIotlb,
    /// `iotlb` holds more than 4 KiB pages.
    large: bool,
    /// `iotlb` holds the identity of translation-off (GSTS.TES = 0).
    pub(crate) untranslated: bool,
}

impl Cache {
    /// Empties the IOTLB, keeping the context entry; the translations
    /// stay in the guest's tables (see [`Self::drop_translations`]).
    fn empty_tlb(&mut self) {
        self.iotlb.clear();
        self.large = false;
        self.untranslated = false;
    }

    /// Drops every cached translation, recording the removal in `hot`.
    pub(crate) fn drop_translations(&mut self, hot: &HotPageSource) {
        self.empty_tlb();
        hot.record_removal(0, u64::MAX);
    }

    /// Drops everything: context entry and IOTLB.
    pub(crate) fn clear(&mut self, hot: &HotPageSource) {
        self.drop_translations(hot);
        self.context = None;
    }

    /// Applies `change`, which adds at most `cost` entries, to the IOTLB
    /// ([`BoundedIotlb::apply`]); `false`, changing nothing, when `cost`
    /// alone is above `capacity`. An IOTLB that started over holds no
    /// large page any more.
    fn apply(&mut self, capacity: usize, cost: usize, change: impl FnOnce(&mut Iotlb)) -> bool {
        match self.iotlb.apply(capacity, cost, change) {
            Applied::Kept => true,
            Applied::StartedOver => {
                self.large = false;
                true
            }
            Applied::TooLarge => false,
        }
    }

    /// Drops the cached translations of `[start, start + len)`, recording
    /// the removal in `hot`.
    pub(crate) fn invalidate_pages(&mut self, capacity: usize, start: u64, len: u64, hot: &HotPageSource) {
        // The end, exclusive; with large pages cached, out to whole 1 GiB
        // chunks (see the module documentation).
        let end = start.checked_add(len);
        let (start, end) = if self.large {
            let round_up = |e: u64| e.checked_add(IDENTITY_CHUNK - 1).map(|e| e & !(IDENTITY_CHUNK - 1));
            (start & !(IDENTITY_CHUNK - 1), end.and_then(round_up))
        } else {
            (start, end)
        };
        // vm-memory's `Iotlb` adds start and length unchecked, so a range
        // ending at 2^64 (the guest may name the last pages) cannot be
        // removed as a range: everything goes, which a cache may always do.
        let Some(len) = end.and_then(|end| usize::try_from(end - start).ok()) else {
            self.drop_translations(hot);
            return;
        };
        if len == 0 {
            return;
        }
        hot.record_removal(start, start + (len as u64 - 1));
        let done = self.apply(capacity, REMOVE_COST, |tlb| tlb.invalidate_mapping(GuestAddress(start), len));
        if !done {
            self.drop_translations(hot);
        }
    }
}

/// One source ID: its caches and counters.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) source_id: u16,
    pub(crate) cache: RwLock<Cache>,
    /// The source ID as the threads' hot pages know it: every removal
    /// from `cache` is recorded there.
    pub(crate) hot: Arc<HotPageSource>,
    capacity: usize,
    pub(crate) counters: Counters,
    /// The domain of the last context entry it used ([`NO_DOMAIN`]: none
    /// yet): kept when the guest drops its caches or turns translation off
    /// at shutdown, so that `--stats` names it.
    last_domain: AtomicU32,
}

const NO_DOMAIN: u32 = u32::MAX;

impl EndpointState {
    pub(crate) fn new(source_id: u16, capacity: usize) -> Self {
        Self {
            source_id,
            cache: RwLock::new(Cache::default()),
            hot: Arc::new(HotPageSource::new()),
            capacity,
            counters: Counters::default(),
            last_domain: AtomicU32::new(NO_DOMAIN),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn stats(&self) -> VtdStats {
        let domain = u16::try_from(self.last_domain.load(Ordering::Relaxed)).ok();
        VtdStats::snapshot(self.source_id, domain, &self.counters, self.hot.translations())
    }
}

/// The unit as one source ID sees it: the `vm_memory::Iommu` to build that
/// device's memory with ([`crate::translated_memory`]). Cheap to clone;
/// every clone is the same source ID.
#[derive(Clone)]
pub struct VtdEndpoint {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<EndpointState>,
}

impl std::fmt::Debug for VtdEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtdEndpoint").field("source_id", &self.state.source_id).finish_non_exhaustive()
    }
}

/// A translation to cache: IOVA, output address, length, permissions.
type Entry = (u64, u64, u64, Permissions);

fn insert(tlb: &mut Iotlb, entries: &[Entry]) {
    for &(iova, phys, len, permissions) in entries {
        if let Ok(len) = usize::try_from(len) {
            // `set_mapping` cannot fail.
            let _ = tlb.set_mapping(GuestAddress(iova), GuestAddress(phys), len, permissions);
        }
    }
}

/// Identity entries covering `[start, end)`, in whole aligned chunks where
/// they fit below 2^64.
fn identity(start: u64, end: u64) -> Entry {
    let first = start & !(IDENTITY_CHUNK - 1);
    let last = end.checked_add(IDENTITY_CHUNK - 1).map(|e| e & !(IDENTITY_CHUNK - 1)).unwrap_or(end);
    (first, first, last - first, Permissions::ReadWrite)
}

impl VtdEndpoint {
    /// The source ID.
    pub fn source_id(&self) -> u16 {
        self.state.source_id
    }

    /// This source ID's counters.
    pub fn stats(&self) -> VtdStats {
        self.state.stats()
    }

    /// Reports a failed access (recorded in the fault log unless the
    /// context entry disables it) and builds the error for the device
    /// model.
    fn fail(
        &self,
        fault: WalkFault,
        address: u64,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> IommuTranslateError {
        let sid = self.state.source_id;
        Counters::bump(&self.state.counters.faults);
        let write = access.has_write();
        if !fault.fpd {
            self.shared.record_fault(FaultRecord { source_id: sid, address, reason: fault.reason, write });
        }
        IommuTranslateError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason: format!(
                "VT-d fault {:#x} ({:?}) for source-id {sid:#06x} {} at {address:#x}",
                fault.reason as u8,
                fault.reason,
                if write { "write" } else { "read" }
            ),
        }
    }

    /// The context entry of this source ID: cached, or read from the root
    /// table at `root`.
    fn context(&self, root: Option<u64>) -> Result<Context, WalkFault> {
        if let Some(c) = read(&self.state.cache).context {
            return Ok(c);
        }
        Counters::bump(&self.state.counters.context_misses);
        let root = root.ok_or(FaultReason::RootTableAccess)?;
        tables::context(&self.shared.mem, root, self.state.source_id)
    }

    /// Walks every page of `[iova, end)`.
    fn walk(
        &self,
        table: u64,
        iova: u64,
        end: u64,
        access: Permissions,
    ) -> Result<Vec<Entry>, (FaultReason, u64)> {
        let snoop = self.shared.config.coherent;
        let mut entries = Vec::new();
        let mut at = iova;
        while at < end {
            let Page { iova: page, phys, size, permissions } =
                tables::walk(&self.shared.mem, table, at, access, snoop).map_err(|r| (r, at))?;
            if !permissions.allow(access) {
                return Err((tables::permission_fault(access), at));
            }
            entries.push((page, phys, size, permissions));
            match page.checked_add(size) {
                Some(next) => at = next,
                None => break,
            }
        }
        Ok(entries)
    }

    /// Puts `entries` in the cache (with `context`) and returns the
    /// snapshot holding them, or a snapshot of their own if they do not fit.
    fn fill(&self, context: Option<Context>, entries: &[Entry], untranslated: bool) -> Arc<Iotlb> {
        let cost = entries.len().saturating_mul(INSERT_COST);
        let large = entries.iter().any(|e| e.2 > 0x1000);
        if let Some(c) = context {
            self.state.last_domain.store(u32::from(c.domain), Ordering::Relaxed);
        }
        let mut cache = write(&self.state.cache);
        if cache.context != context || cache.untranslated != untranslated {
            cache.clear(&self.state.hot);
            cache.context = context;
            cache.untranslated = untranslated;
        }
        if cache.apply(self.state.capacity, cost, |tlb| insert(tlb, entries)) {
            cache.large |= large;
            return cache.iotlb.snapshot().clone();
        }
        drop(cache);
        let mut own = Iotlb::new();
        insert(&mut own, entries);
        Arc::new(own)
    }

    /// Resolves a miss: with translation off, the identity; otherwise the
    /// context entry and a walk of every page the access touches.
    fn resolve(
        &self,
        iova: GuestAddress,
        length: usize,
        end: u64,
        access: Permissions,
    ) -> Result<IotlbIterator<Arc<Iotlb>>, IommuTranslateError> {
        let shared = &*self.shared;
        let state = read(&shared.translation);
        if !state.enabled {
            Counters::bump(&self.state.counters.untranslated);
            shared.warn_translation_off(self.state.source_id);
            let tlb = self.fill(None, &[identity(iova.0, end)], true);
            drop(state);
            return self.lookup(tlb, iova, length, access);
        }
        Counters::bump(&self.state.counters.translations);
        Counters::bump(&self.state.counters.iotlb_misses);
        let context = match self.context(state.root) {
            Ok(c) => c,
            Err(fault) => {
                drop(state);
                return Err(self.fail(fault, iova.0, iova, length, access));
            }
        };
        let entries = match context.kind {
            ContextKind::PassThrough => vec![identity(iova.0, end)],
            ContextKind::Translate { table } => match self.walk(table, iova.0, end, access) {
                Ok(e) => e,
                Err((reason, at)) => {
                    // The context entry was good: keep it cached.
                    let mut cache = write(&self.state.cache);
                    if cache.context.is_none() {
                        cache.context = Some(context);
                    }
                    drop(cache);
                    drop(state);
                    return Err(self.fail(WalkFault { reason, fpd: context.fpd }, at, iova, length, access));
                }
            },
        };
        let tlb = self.fill(Some(context), &entries, false);
        drop(state);
        self.lookup(tlb, iova, length, access)
    }

    fn lookup(
        &self,
        tlb: Arc<Iotlb>,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Arc<Iotlb>>, IommuTranslateError> {
        Iotlb::lookup(tlb, iova, length, access).map_err(|_| {
            // A fill that does not cover what it was made for: a bug.
            dmavm_devices::guest_log!(static log::Level::Error, "VT-d: source-id {:#06x}: IOTLB fill does not cover {iova:?}+{length}", self.state.source_id);
            IommuTranslateError::CannotResolve {
                iova_range: IovaRange { base: iova, length },
                reason: "VT-d IOTLB inconsistent".into(),
            }
        })
    }
}

impl TranslatingEndpoint for VtdEndpoint {
    fn hot_pages(&self) -> &Arc<HotPageSource> {
        &self.state.hot
    }
}

impl Iommu for VtdEndpoint {
    /// A snapshot of the source ID's IOTLB: a device model may keep the
    /// iterator while it makes other accesses, and invalidations never
    /// wait for it.
    type IotlbGuard<'a> = Arc<Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, IommuTranslateError> {
        let ep = &*self.state;
        let Some(end) = u64::try_from(length).ok().and_then(|l| iova.0.checked_add(l)) else {
            Counters::bump(&ep.counters.translations);
            return Err(self.fail(FaultReason::AddressBeyondWidth.into(), iova.0, iova, length, access));
        };
        // Read first: whatever serves this translation is at least as
        // recent (see `hot_pages`). `VtdMemory` asked the thread's hot
        // pages before calling this.
        let seen = ep.hot.invalidations().generation();
        let (tlb, untranslated) = {
            let cache = read(&ep.cache);
            (cache.iotlb.snapshot().clone(), cache.untranslated)
        };
        let hit = match hot_pages::small_access_page(iova.0, end).filter(|_| !untranslated) {
            Some(page) => {
                // The lookup consumes its snapshot; the page is offered
                // from the same one, only when the access hits.
                let hit = Iotlb::lookup(tlb.clone(), iova, length, access).ok();
                if hit.is_some() {
                    hot_pages::insert(&ep.hot, seen, page, &tlb, access);
                }
                // Not held into a miss: a fill finding the snapshot shared
                // would start the IOTLB over.
                drop(tlb);
                hit
            }
            None => Iotlb::lookup(tlb, iova, length, access).ok(),
        };
        if let Some(hit) = hit {
            Counters::bump(if untranslated { &ep.counters.untranslated } else { &ep.counters.translations });
            return Ok(hit);
        }
        self.resolve(iova, length, end, access)
    }
}
