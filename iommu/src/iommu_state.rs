//! What the device, its endpoints and the VMM share: the configuration, the
//! IOMMU state, the endpoints' IOTLBs and the fault queue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{IommuConfig, MixedCoherency, PROPERTY_HEADER_SIZE, RESV_MEM_PROPERTY_SIZE};
use crate::domain::{Limits, State};
use crate::endpoint::Endpoint;
use crate::error::IommuError;
use crate::fault::FaultQueue;
use crate::request::{Fault, ReservedKind, ReservedRegion};
use crate::stats::EndpointStats;
use crate::sync::{lock, read, write};

/// The IOMMU behind the virtio device: its configuration, reserved regions,
/// domains, endpoints and pending faults.
pub(crate) struct IommuState {
    pub(crate) config: IommuConfig,
    /// The reserved regions PROBE reports, MSI region included, by address.
    pub(crate) regions: Vec<ReservedRegion>,
    pub(crate) state: RwLock<State>,
    pub(crate) endpoints: BTreeMap<u32, Arc<Endpoint>>,
    pub(crate) faults: Mutex<FaultQueue>,
    /// Whether [`IommuState::notice_no_driver`] has spoken.
    no_driver_noticed: AtomicBool,
}

impl IommuState {
    pub(crate) fn new(
        config: IommuConfig,
        endpoints: &[u32],
        reserved: &[(u64, u64)],
    ) -> Result<Self, IommuError> {
        config.validate()?;
        let mut regions: Vec<ReservedRegion> = reserved
            .iter()
            .map(|&(start, end)| ReservedRegion { start, end, kind: ReservedKind::Reserved })
            .chain(config.msi_region.map(|(start, end)| ReservedRegion {
                start,
                end,
                kind: ReservedKind::Msi,
            }))
            .collect();
        regions.sort_by_key(|r| r.start);
        for r in &regions {
            if r.start > r.end {
                return Err(IommuError::EmptyRegion { start: r.start, end: r.end });
            }
        }
        for pair in regions.windows(2) {
            if let [a, b] = pair {
                if b.start <= a.end {
                    return Err(IommuError::OverlappingRegions(a.start, a.end, b.start, b.end));
                }
            }
        }
        let needed =
            regions.len() as u64 * u64::from(RESV_MEM_PROPERTY_SIZE) + u64::from(PROPERTY_HEADER_SIZE);
        if needed > u64::from(config.probe_size) {
            return Err(IommuError::ProbeSizeTooSmall { probe_size: config.probe_size, needed });
        }
        // The IOTLBs share one budget, so that their total does not grow
        // with the number of endpoints.
        let iotlb_capacity = config.iotlb_entries / endpoints.len().max(1);
        let mut map = BTreeMap::new();
        for &id in endpoints {
            if map.insert(id, Arc::new(Endpoint::new(id, iotlb_capacity))).is_some() {
                return Err(IommuError::DuplicateEndpoint(id));
            }
        }
        let known: BTreeSet<u32> = map.keys().copied().collect();
        if let Some(&id) = config.noncoherent_endpoints.iter().find(|id| !known.contains(id)) {
            return Err(IommuError::UnknownNoncoherentEndpoint(id));
        }
        let coherency_classes = (config.mixed_coherency == MixedCoherency::Reject)
            .then(|| config.noncoherent_endpoints.iter().copied().collect());
        let limits = Limits {
            coherency_classes,
            granule: config.granule(),
            input_range: config.input_range,
            domain_range: config.domain_range,
            max_mappings: config.max_mappings,
            reserved: regions.clone(),
        };
        let state = State::new(config.boot_bypass, known, limits);
        Ok(Self {
            config,
            regions,
            state: RwLock::new(state),
            endpoints: map,
            faults: Mutex::new(FaultQueue::default()),
            no_driver_noticed: AtomicBool::new(false),
        })
    }

    /// Says, once per IOMMU, that `endpoint` accessed memory attached to
    /// no domain before the driver attached anything: the likely cause
    /// (the guest has no driver for this IOMMU, so the device will never be
    /// attached and its rings stay unreachable) and the ways out.
    pub(crate) fn notice_no_driver(&self, endpoint: u32) {
        if self.no_driver_noticed.swap(true, Ordering::Relaxed) {
            return;
        }
        dmavm_devices::guest_log!(
            static log::Level::Warn,
            "virtio-iommu: endpoint {endpoint:#x} accessed guest memory attached to no domain, and the guest \
             has attached no endpoint: it likely has no driver for this IOMMU (Linux CONFIG_VIRTIO_IOMMU), so \
             every translated device faults; use --iommu type=vtd (x86_64), --iommu boot-bypass=on, or \
             direct-ram-access=on on the devices"
        );
    }

    pub(crate) fn report_fault(&self, fault: Fault) {
        lock(&self.faults).report(fault);
    }

    /// Drops every cached translation of `endpoint`.
    pub(crate) fn invalidate_endpoint(&self, endpoint: u32) {
        if let Some(ep) = self.endpoints.get(&endpoint) {
            ep.invalidate_all();
        }
    }

    /// The device behind `endpoint` left: detaches it from its domain (a
    /// domain left without endpoints is freed with its mappings; one that
    /// others share keeps them), drops its IOTLB and zeroes its counters.
    /// The endpoint stays in scope for the next device. False for an
    /// endpoint the IOMMU does not know.
    pub(crate) fn endpoint_removed(&self, endpoint: u32) -> bool {
        let Some(ep) = self.endpoints.get(&endpoint) else {
            return false;
        };
        // The IOTLB is emptied under the state's lock, so that no miss can
        // refill it from the old attachment afterwards.
        let mut state = write(&self.state);
        state.detach_any(endpoint);
        ep.invalidate_all();
        ep.counters.reset();
        ep.hot.reset_translations();
        drop(state);
        true
    }

    pub(crate) fn stats(&self) -> Vec<EndpointStats> {
        let state = read(&self.state);
        self.endpoints
            .values()
            .map(|ep| {
                let domain = state.attached.get(&ep.id).copied();
                EndpointStats::snapshot(ep.id, domain, &ep.counters, ep.hot.translations())
            })
            .collect()
    }
}
