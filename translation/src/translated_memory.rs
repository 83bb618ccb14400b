//! [`TranslatedMemory`]: guest memory as a device behind an IOMMU
//! reaches it (`direct-ram-access=off`). Every address is an IOVA of the
//! device's endpoint; every access is translated, counted, and faults
//! when the guest has not mapped it with the access's permission.
//!
//! A type of its own rather than vm-memory's `IommuMemory`: that one asks
//! its `Iommu` for an `IotlbIterator`, which only `Iotlb::lookup` can
//! build, with three range-map searches per access even when the answer
//! is one page this thread already holds (about 24 ns of a 42 ns hit,
//! docs/benchmarks.md). A device model makes a dozen small accesses per
//! request (ring indexes and entries, descriptors, headers, statuses);
//! here those that hit a hot page ([`crate::hot_pages`]) go straight to
//! the guest-physical address, and every other access takes the full
//! path through the endpoint's `Iommu::translate`, as `IommuMemory` would.
//! Its IOVA dirty bitmap (vm-memory's, for migration) does not exist:
//! slices carry guest memory's own.

use std::iter::FusedIterator;
use std::sync::Arc;

use vm_memory::bitmap::{BS, MS};
use vm_memory::guest_memory::{GuestMemoryBackendSliceIterator, GuestMemorySliceIterator};
use vm_memory::iommu::IotlbIterator;
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestMemoryRegion,
    Iommu, Permissions, VolatileSlice,
};

use crate::hot_page_source::HotPageSource;
use crate::hot_pages;

/// An IOMMU as one endpoint sees it, whose small accesses this thread's
/// hot pages may serve: its `Iommu::translate` offers the pages of small
/// accesses it serves from its IOTLB to [`hot_pages::insert`], and it
/// records every removal from its translations in [`Self::hot_pages`].
pub trait TranslatingEndpoint: Iommu {
    /// The endpoint as the threads' hot pages know it.
    fn hot_pages(&self) -> &Arc<HotPageSource>;
}

/// Guest memory as an endpoint behind an IOMMU sees it: every address is
/// an IOVA translated by `I`, the IOMMU as that endpoint sees it.
#[derive(Debug, Clone)]
pub struct TranslatedMemory<I, B = GuestMemoryMmap> {
    backend: B,
    iommu: I,
}

impl<I, B> TranslatedMemory<I, B> {
    /// The endpoint whose translations this memory follows.
    pub fn iommu(&self) -> &I {
        &self.iommu
    }
}

/// The memory to give the device model of `endpoint`
/// (`direct-ram-access=off`): `mem` (guest-physical memory, e.g. a clone of
/// the VM's `GuestMemoryMmap`) seen through the IOMMU.
pub fn translated_memory<I: TranslatingEndpoint, B: GuestMemoryBackend>(
    mem: B,
    endpoint: I,
) -> TranslatedMemory<I, B> {
    TranslatedMemory { backend: mem, iommu: endpoint }
}

impl<I: TranslatingEndpoint, B: GuestMemoryBackend> GuestMemory for TranslatedMemory<I, B> {
    type PhysicalMemory = B;
    type Bitmap = <B::R as GuestMemoryRegion>::B;

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        if let Some(phys) = hot_pages::physical(self.iommu.hot_pages(), addr.0, count, access) {
            return self.backend.check_range(GuestAddress(phys), count);
        }
        match self.iommu.translate(addr, count, access) {
            Ok(mut ranges) => ranges.all(|r| self.backend.check_range(r.base, r.length)),
            Err(_) => false,
        }
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> vm_memory::guest_memory::Result<impl GuestMemorySliceIterator<'a, BS<'a, Self::Bitmap>>> {
        if let Some(phys) = hot_pages::physical(self.iommu.hot_pages(), addr.0, count, access) {
            return Ok(TranslatedSlices::<I, B>::Hot(self.backend.get_slices(GuestAddress(phys), count)));
        }
        let ranges = self.iommu.translate(addr, count, access).map_err(GuestMemoryError::IommuError)?;
        Ok(TranslatedSlices::Translated { backend: &self.backend, ranges, current: None })
    }

    /// None: a device behind the IOMMU has no view of guest-physical
    /// memory.
    fn physical_memory(&self) -> Option<&Self::PhysicalMemory> {
        None
    }
}

/// The slices of guest memory that one translated access covers. An
/// enum rather than a struct of options: a hot page's access, the common
/// one, is then the backend's own iterator behind one match, and costs
/// about what the same access of guest-physical memory does.
enum TranslatedSlices<'a, I: Iommu + 'a, B: GuestMemoryBackend> {
    /// A hot page's single range (the backend's iterator is fused).
    Hot(GuestMemoryBackendSliceIterator<'a, B>),
    /// The ranges the endpoint's IOTLB translated the access to, visited
    /// in turn.
    Translated {
        backend: &'a B,
        /// The ranges not yet visited.
        ranges: IotlbIterator<I::IotlbGuard<'a>>,
        /// The slices of the range being visited.
        current: Option<GuestMemoryBackendSliceIterator<'a, B>>,
    },
    /// After an error or the end: only `None`.
    Done,
}

impl<'a, I: Iommu + 'a, B: GuestMemoryBackend> Iterator for TranslatedSlices<'a, I, B> {
    type Item = vm_memory::guest_memory::Result<VolatileSlice<'a, MS<'a, B>>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (backend, ranges, current) = match self {
            Self::Hot(slices) => return slices.next(),
            Self::Translated { backend, ranges, current } => (*backend, ranges, current),
            Self::Done => return None,
        };
        loop {
            match current.as_mut().and_then(Iterator::next) {
                Some(Ok(slice)) => return Some(Ok(slice)),
                Some(Err(e)) => {
                    *self = Self::Done;
                    return Some(Err(e));
                }
                None => {}
            }
            let Some(next) = ranges.next() else {
                *self = Self::Done;
                return None;
            };
            *current = Some(backend.get_slices(next.base, next.length));
        }
    }
}

impl<'a, I: Iommu + 'a, B: GuestMemoryBackend> FusedIterator for TranslatedSlices<'a, I, B> {}

impl<'a, I: Iommu + 'a, B: GuestMemoryBackend> GuestMemorySliceIterator<'a, MS<'a, B>>
    for TranslatedSlices<'a, I, B>
{
}
