//! [`EndpointIommu`]: the `vm_memory::Iommu` through which the device model
//! of an endpoint (a device in the IOMMU's scope) reaches guest memory, and
//! the [`TranslatedMemory`](crate::TranslatedMemory) built on it.
//!
//! # Translation
//!
//! [`TranslatedMemory`](crate::TranslatedMemory) first looks a small access up in the calling
//! thread's hot pages of the endpoint ([`dmavm_translation::hot_pages`]:
//! ring entries, descriptors, headers, statuses; no atomic
//! read-modify-write); everything else comes to
//! [`EndpointIommu::translate`], which looks in the endpoint's IOTLB: a
//! `vm_memory::Iotlb` shared as an `Arc` snapshot, so a hit costs a read
//! lock, a reference count and the lookup, and the iterator handed to the
//! device model owns its snapshot (no lock held, no copy made); a small
//! access served there makes its page hot. On a miss or a permission
//! failure it resolves the access against the IOMMU state: an endpoint in
//! bypass mode (unattached with `bypass` = 1, or attached to a bypass
//! domain) gets the identity; an attached endpoint gets the mappings of its
//! domain that cover the access, which are put in the IOTLB whole; the
//! lookup is then repeated. The IOTLB has a fixed capacity (see
//! [`crate::endpoint`]): filling it past that empties it first, and an
//! access needing more entries than the capacity is translated without
//! being cached. An access that cannot be resolved (unattached
//! without bypass: `FAULT_R_DOMAIN`; a gap or a missing permission:
//! `FAULT_R_MAPPING`, at the first failing address) returns
//! `vm_memory::iommu::Error::CannotResolve` and is reported as a fault on
//! the event queue. An unattached endpoint's access before the driver has
//! attached any endpoint also gets one warning per IOMMU in the host's log
//! ([`IommuState::notice_no_driver`]): a guest without a driver for the
//! IOMMU would otherwise just see its devices hang.
//!
//! # Consistency
//!
//! The IOTLB is filled while the IOMMU state is read-locked and invalidated
//! while it is write-locked (UNMAP: the removed ranges; ATTACH, DETACH,
//! reset and `bypass` changes: everything), so an entry the driver removed
//! is never served to a translation that starts after the request
//! completed. Every invalidation is also recorded in the endpoint's
//! invalidation log (its `HotPageSource`), from which the threads' hot pages drop what it
//! overlaps before their next use. (An access already translated goes on, as DMA in flight
//! does on hardware.) Lock order: state, then IOTLB; the fault queue is
//! locked with neither held. The iterator a translation returns holds no
//! lock, so device models may nest accesses freely.

use std::ops::Deref;
use std::sync::Arc;

use dmavm_translation::{hot_pages, HotPageSource, TranslatingEndpoint};
use vm_memory::iommu::{Error as IommuTranslateError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, Iommu, Iotlb, Permissions};

use crate::domain::{Resolution, Unresolved};
use crate::endpoint::{insert, Endpoint, Entry};
use crate::iommu_state::IommuState;
use crate::request::{
    Fault, VIRTIO_IOMMU_FAULT_F_ADDRESS, VIRTIO_IOMMU_FAULT_F_READ, VIRTIO_IOMMU_FAULT_F_WRITE,
    VIRTIO_IOMMU_FAULT_R_DOMAIN, VIRTIO_IOMMU_FAULT_R_MAPPING, VIRTIO_IOMMU_FAULT_R_UNKNOWN,
};
use crate::stats::Counters;
use crate::sync::read;

/// The IOMMU as one endpoint sees it: the `vm_memory::Iommu` to build the
/// endpoint's translated memory with ([`crate::translated_memory`]). Cheap to
/// clone; every clone is the same endpoint.
#[derive(Clone)]
pub struct EndpointIommu {
    pub(crate) shared: Arc<IommuState>,
    pub(crate) endpoint: Arc<Endpoint>,
}

impl std::fmt::Debug for EndpointIommu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointIommu").field("endpoint", &self.endpoint.id).finish_non_exhaustive()
    }
}

impl EndpointIommu {
    /// Endpoint `id` of `shared`; `None` if `id` was not registered at
    /// construction.
    pub(crate) fn new(shared: &Arc<IommuState>, id: u32) -> Option<Self> {
        let endpoint = shared.endpoints.get(&id)?.clone();
        Some(Self { shared: shared.clone(), endpoint })
    }

    /// The endpoint ID.
    pub fn id(&self) -> u32 {
        self.endpoint.id
    }

    /// Reports a failed access as a fault and builds the error for the
    /// device model.
    fn fail(
        &self,
        (reason, address): Unresolved,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> IommuTranslateError {
        let mut flags = VIRTIO_IOMMU_FAULT_F_ADDRESS;
        if matches!(access, Permissions::Read | Permissions::ReadWrite) {
            flags |= VIRTIO_IOMMU_FAULT_F_READ;
        }
        if access.has_write() {
            flags |= VIRTIO_IOMMU_FAULT_F_WRITE;
        }
        Counters::bump(&self.endpoint.counters.faults);
        self.shared.report_fault(Fault { reason, flags, endpoint: self.endpoint.id, address });
        IommuTranslateError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason: format!(
                "virtio-iommu fault (reason {reason}) for endpoint {:#x} at {address:#x}",
                self.endpoint.id
            ),
        }
    }

    /// A translation the IOTLB should have served and did not (a bug):
    /// reported as a fault of unknown reason.
    fn inconsistent(&self, iova: GuestAddress, length: usize, access: Permissions) -> IommuTranslateError {
        dmavm_devices::guest_log!(static log::Level::Error, "virtio-iommu: endpoint {:#x}: IOTLB does not cover {iova:?}+{length}", self.endpoint.id);
        self.fail((VIRTIO_IOMMU_FAULT_R_UNKNOWN, iova.0), iova, length, access)
    }
}

/// The translation state a translation's iterator keeps: a snapshot of
/// the endpoint's IOTLB. A device model may keep the iterator while it
/// makes other accesses, and invalidations never wait for it.
#[derive(Debug, Clone)]
pub struct IotlbSnapshot(Arc<Iotlb>);

impl Deref for IotlbSnapshot {
    type Target = Iotlb;

    fn deref(&self) -> &Iotlb {
        &self.0
    }
}

/// The same translation, over an [`IotlbSnapshot`].
fn shared(
    iova: GuestAddress,
    length: usize,
    access: Permissions,
    tlb: Arc<Iotlb>,
) -> Option<IotlbIterator<IotlbSnapshot>> {
    Iotlb::lookup(IotlbSnapshot(tlb), iova, length, access).ok()
}

impl TranslatingEndpoint for EndpointIommu {
    fn hot_pages(&self) -> &Arc<HotPageSource> {
        &self.endpoint.hot
    }
}

impl Iommu for EndpointIommu {
    type IotlbGuard<'a> = IotlbSnapshot;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, IommuTranslateError> {
        let ep = &self.endpoint;
        // The IOTLB works on half-open u64 ranges: an access running past
        // 2^64 - 1 cannot be mapped anyway.
        let Some(end) = u64::try_from(length).ok().and_then(|l| iova.0.checked_add(l)) else {
            Counters::bump(&ep.counters.translations);
            return Err(self.fail((VIRTIO_IOMMU_FAULT_R_MAPPING, iova.0), iova, length, access));
        };
        // Read first: whatever serves this translation is at least as
        // recent (see `hot_pages`). The thread's hot pages are not looked
        // at here: `TranslatedMemory` asked them before calling this.
        let seen = ep.hot.invalidations().generation();
        let page = hot_pages::small_access_page(iova.0, end);
        Counters::bump(&ep.counters.translations);
        let snapshot = ep.snapshot();
        let hit = match page {
            // The lookup consumes its snapshot; the page is offered from
            // the same one, only when the access hits. Not held into a
            // miss: a fill finding the snapshot shared would start the
            // IOTLB over.
            Some(page) => {
                let hit = shared(iova, length, access, snapshot.clone());
                if hit.is_some() {
                    hot_pages::insert(&ep.hot, seen, page, &snapshot, access);
                }
                drop(snapshot);
                hit
            }
            // A data buffer: no second reference to count up and down.
            None => shared(iova, length, access, snapshot),
        };
        if let Some(hit) = hit {
            return Ok(hit);
        }
        Counters::bump(&ep.counters.iotlb_misses);
        let state = read(&self.shared.state);
        let resolution = match state.resolve(ep.id, iova.0, end, access) {
            Ok(r) => r,
            Err(unresolved) => {
                let no_driver = unresolved.0 == VIRTIO_IOMMU_FAULT_R_DOMAIN && !state.ever_attached;
                drop(state);
                if no_driver {
                    self.shared.notice_no_driver(ep.id);
                }
                return Err(self.fail(unresolved, iova, length, access));
            }
        };
        let entries: Vec<Entry> = match resolution {
            // `length` > 0: an empty access never misses.
            Resolution::Identity => vec![(iova.0, iova.0, length, Permissions::ReadWrite)],
            Resolution::Mapped(mappings) => mappings
                .into_iter()
                // Mappings end below the input range's end, so the length
                // neither overflows nor reaches 2^64.
                .filter_map(|(start, m)| {
                    let len = usize::try_from(m.end - start + 1).ok()?;
                    Some((start, m.phys, len, m.permissions()))
                })
                .collect(),
        };
        // Filled under the state's read lock, so nothing can invalidate
        // what was just filled before the lookup.
        let snapshot = ep.fill(&entries).unwrap_or_else(|| {
            // More mappings than the IOTLB may hold: this access is served
            // from a translation of its own, dropped with its iterator.
            let mut own = Iotlb::new();
            insert(&mut own, &entries);
            Arc::new(own)
        });
        // Not made hot here: a page touched once (the first access after
        // the IOTLB was emptied) is not worth it yet; its next access hits
        // the IOTLB and makes it hot.
        let hit = shared(iova, length, access, snapshot);
        drop(state);
        hit.ok_or_else(|| self.inconsistent(iova, length, access))
    }
}
