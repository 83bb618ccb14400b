//! [`IommuHandle`]: the VMM's view of a virtio-iommu once the device went
//! to its transport.

use std::sync::Arc;

use crate::endpoint_iommu::EndpointIommu;
use crate::iommu_state::IommuState;
use crate::stats::EndpointStats;
use crate::sync::lock;

/// The VMM's handle on a virtio-iommu: endpoint translators and counters.
/// Cheap to clone; it stays valid after the device moved into its
/// transport.
#[derive(Clone)]
pub struct IommuHandle {
    pub(crate) shared: Arc<IommuState>,
}

impl std::fmt::Debug for IommuHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IommuHandle")
            .field("endpoints", &self.shared.endpoints.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl IommuHandle {
    /// The translator of endpoint `id`, to build its memory with
    /// [`translated_memory`](crate::translated_memory); `None` if `id` was
    /// not registered at construction.
    pub fn endpoint(&self, id: u32) -> Option<EndpointIommu> {
        EndpointIommu::new(&self.shared, id)
    }

    /// The registered endpoint IDs, ascending.
    pub fn endpoint_ids(&self) -> Vec<u32> {
        self.shared.endpoints.keys().copied().collect()
    }

    /// The device at endpoint `id` was removed (hot-unplug): nothing of
    /// it stays in the endpoint: it is detached from its domain (the
    /// domain freed with its mappings if no other endpoint is in it), its
    /// IOTLB is empty and its counters are zero, as for a device never
    /// there. False if `id` was not registered at construction.
    pub fn endpoint_removed(&self, id: u32) -> bool {
        self.shared.endpoint_removed(id)
    }

    /// Every endpoint's counters, by ascending endpoint ID.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.shared.stats()
    }

    /// Faults dropped because [`MAX_PENDING_FAULTS`](crate::fault::MAX_PENDING_FAULTS)
    /// were already waiting for an event buffer.
    pub fn faults_dropped(&self) -> u64 {
        lock(&self.shared.faults).dropped
    }
}
