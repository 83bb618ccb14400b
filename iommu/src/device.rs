//! [`VirtioIommu`], the virtio device (ID 23): the request queue (0), served
//! when the driver notifies it, and the event queue (1), where faults go.
//!
//! # Request layout
//!
//! A request is a chain of device-readable descriptors followed by
//! device-writable ones (virtio 1.2, 2.7.4.2). The readable part holds the
//! request structure of its type, head included (extra bytes are ignored);
//! the writable part ends with the 4-byte tail, and for PROBE starts with
//! the `probe_size` bytes of properties. The used length is the length of
//! the whole writable part (the tail sits at its end; Linux copies the
//! writable part back only when the used length equals it). Bytes of the
//! writable part the reply does not define are left as they were.
//!
//! | driver input | outcome |
//! |---|---|
//! | chain structurally unusable (see `dmavm_devices::virtio::chain`), a readable descriptor after a writable one, writable part shorter than 4 bytes or not writable in guest memory | used length 0, nothing written |
//! | unknown request type | used length 0, nothing written (5.13.6.1: "SHOULD NOT write the buffer") |
//! | readable part shorter than the head or than its type's structure | `S_INVAL` |
//! | readable part not readable in guest memory | `S_IOERR` |
//! | MAP / UNMAP without `F_MAP_UNMAP` negotiated, PROBE without `F_PROBE` | `S_UNSUPP` |
//! | ATTACH: reserved bytes not zero, unknown flag (`ATTACH_F_BYPASS` is known only with `F_BYPASS_CONFIG`) | `S_INVAL` |
//! | ATTACH / DETACH / PROBE: unknown endpoint | `S_NOENT` |
//! | any request: domain outside `domain_range` | `S_RANGE` |
//! | ATTACH: existing domain whose bypass kind differs from the flag | `S_INVAL` |
//! | DETACH: endpoint not attached to that domain | `S_INVAL` |
//! | MAP / UNMAP: unknown domain | `S_NOENT` |
//! | MAP / UNMAP: bypass domain, `virt_end < virt_start` | `S_INVAL` |
//! | MAP: unknown flag (`MAP_F_MMIO` is known only with `F_MMIO`) | `S_INVAL` |
//! | MAP / UNMAP: range outside `input_range` | `S_RANGE` |
//! | MAP: `virt_start`, `phys_start` or `virt_end + 1` not aligned to the granule, physical end past 2^64 - 1, range overlapping a reserved (RESV_MEM) region | `S_RANGE` |
//! | MAP: range overlapping an existing mapping | `S_INVAL` |
//! | MAP: all domains together already hold `max_mappings` | `S_NOMEM` |
//! | UNMAP: a mapping only partly inside the range | `S_RANGE`, nothing unmapped |
//! | PROBE: properties part shorter than `probe_size` | `S_INVAL` |
//! | the request queue's rings not accessible, bad head index | [`DeviceError::Queue`]: the transport sets `DEVICE_NEEDS_RESET` |
//!
//! A rejected request changes nothing. DETACH's and UNMAP's reserved bytes
//! and PROBE's are ignored (the spec's "MUST ignore" and "MAY").

use std::sync::Arc;

use dmavm_devices::virtio::chain::{slices, walk, Buffer};
use dmavm_devices::virtio::queue::{drain, prepare_queue};
use dmavm_devices::virtio::{
    Activation, DeviceError, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestMemory, GuestMemoryError, Permissions};

use crate::config::{
    config_bytes, offset, read_bytes, IommuConfig, VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_F_DOMAIN_RANGE,
    VIRTIO_IOMMU_F_INPUT_RANGE, VIRTIO_IOMMU_F_MAP_UNMAP, VIRTIO_IOMMU_F_MMIO, VIRTIO_IOMMU_F_PROBE,
};
use crate::domain::Mapping;
use crate::endpoint_iommu::EndpointIommu;
use crate::error::IommuError;
use crate::fault::EventQueue;
use crate::handle::IommuHandle;
use crate::iommu_state::IommuState;
use crate::request::{self, probe_properties, readable_size, tail, Request, Status, HEAD_SIZE, TAIL_SIZE};
use crate::stats::{Counters, EndpointStats};
use crate::sync::{lock, read, write};

/// Virtio device ID of the IOMMU (virtio 1.2, 5).
pub const VIRTIO_ID_IOMMU: u32 = 23;
/// Size of each of the two queues.
pub const IOMMU_QUEUE_SIZE: u16 = 256;
/// Index of the request queue.
pub const REQUEST_QUEUE: usize = 0;
/// Index of the event queue.
pub const EVENT_QUEUE: usize = 1;

/// Every feature the device offers. `VIRTIO_F_ACCESS_PLATFORM` is not among
/// them (no device model sets it; the transport does, from its
/// `DmaAccess`), and the IOMMU's transport never offers it: the IOMMU
/// reaches its own rings with guest-physical addresses
/// (`DmaAccess::GuestPhysical`), never through itself.
pub const IOMMU_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_IOMMU_F_INPUT_RANGE
    | VIRTIO_IOMMU_F_DOMAIN_RANGE
    | VIRTIO_IOMMU_F_MAP_UNMAP
    | VIRTIO_IOMMU_F_PROBE
    | VIRTIO_IOMMU_F_MMIO
    | VIRTIO_IOMMU_F_BYPASS_CONFIG;

const _: () = assert!(IOMMU_FEATURES & VIRTIO_F_ACCESS_PLATFORM == 0);

/// The request queue once the driver activated the device.
struct Active<M> {
    mem: Arc<M>,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    acked_features: u64,
}

/// A virtio-iommu device. Generic over the memory its own rings live in
/// (guest-physical memory: the IOMMU is never behind itself).
pub struct VirtioIommu<M> {
    pub(crate) shared: Arc<IommuState>,
    queue_sizes: [u16; 2],
    active: Option<Active<M>>,
}

impl<M> std::fmt::Debug for VirtioIommu<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioIommu")
            .field("config", &self.shared.config)
            .field("endpoints", &self.shared.endpoints.keys().collect::<Vec<_>>())
            .field("active", &self.active.is_some())
            .finish()
    }
}

impl<M> VirtioIommu<M> {
    /// Creates the device for the endpoints in its scope (`endpoints`: PCI
    /// requester IDs, or the IDs the VMM gave virtio-mmio devices in the
    /// firmware tables) and the IOVA regions (inclusive) the driver must not
    /// map besides the MSI window (`reserved`, reported by PROBE as
    /// `RESV_MEM_T_RESERVED`).
    ///
    /// Errors: an invalid configuration, an endpoint listed twice, an empty
    /// or overlapping reserved region, or more reserved regions than
    /// `probe_size` can describe.
    pub fn new(config: IommuConfig, endpoints: &[u32], reserved: &[(u64, u64)]) -> Result<Self, IommuError> {
        let shared = Arc::new(IommuState::new(config, endpoints, reserved)?);
        Ok(Self { shared, queue_sizes: [IOMMU_QUEUE_SIZE; 2], active: None })
    }

    /// The VMM's handle (endpoint translators, counters), valid after the
    /// device moved into its transport.
    pub fn handle(&self) -> IommuHandle {
        IommuHandle { shared: self.shared.clone() }
    }

    /// The translator of endpoint `id` (see [`IommuHandle::endpoint`]).
    pub fn endpoint(&self, id: u32) -> Option<EndpointIommu> {
        EndpointIommu::new(&self.shared, id)
    }

    /// Every endpoint's counters (see [`IommuHandle::stats`]).
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.shared.stats()
    }

    /// Sets the `bypass` field; cached translations of unattached endpoints
    /// are dropped when it changes.
    fn set_bypass(&self, bypass: bool) {
        let mut state = write(&self.shared.state);
        if state.bypass == bypass {
            return;
        }
        state.bypass = bypass;
        for id in self.shared.endpoints.keys() {
            if !state.attached.contains_key(id) {
                self.shared.invalidate_endpoint(*id);
            }
        }
    }
}

impl<M: GuestMemory + Send + Sync + 'static> VirtioDevice<M> for VirtioIommu<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_IOMMU
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        IOMMU_FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let bypass = read(&self.shared.state).bypass;
        read_bytes(&config_bytes(&self.shared.config, bypass), offset, data);
    }

    /// Only `bypass` is writable (5.13.4.1), with 0 or 1; other values and
    /// other fields are ignored. The write is honoured whenever it comes:
    /// the feature is always offered, and a driver that did not negotiate
    /// it must not write at all.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            match (at, byte) {
                (Some(offset::BYPASS), 0 | 1) => self.set_bypass(byte == 1),
                (at, _) => log::debug!("virtio-iommu: config write {byte:#x} at {at:?} ignored"),
            }
        }
    }

    fn activate(&mut self, activation: Activation<M>) -> Result<(), DeviceError> {
        let Activation { mem, queues, acked_features, interrupt } = activation;
        let mut queues = queues.into_iter();
        let requests = prepare_queue(REQUEST_QUEUE, queues.next(), &*mem, acked_features)?;
        let events = prepare_queue(EVENT_QUEUE, queues.next(), &*mem, acked_features)?;
        let sink = EventQueue { mem: mem.clone(), queue: events, interrupt: interrupt.clone() };
        self.active = Some(Active { mem, queue: requests, interrupt, acked_features });
        let mut faults = lock(&self.shared.faults);
        faults.sink = Some(Box::new(sink));
        // Faults from before activation, if buffers are already there.
        faults.deliver()
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut() else {
            log::debug!("virtio-iommu: notification before activation ignored");
            return Ok(());
        };
        match index {
            REQUEST_QUEUE => {
                let shared = &*self.shared;
                let mem = &*active.mem;
                let acked = active.acked_features;
                let max_descriptors = active.queue.size();
                drain(&mut active.queue, mem, &*active.interrupt, REQUEST_QUEUE as u16, |chain| {
                    Ok(match walk(chain, max_descriptors) {
                        Ok(buffers) => handle_request(shared, acked, mem, &buffers),
                        Err(e) => {
                            log::debug!("virtio-iommu: {e}; request returned unused");
                            0
                        }
                    })
                })
            }
            EVENT_QUEUE => lock(&self.shared.faults).deliver(),
            _ => {
                log::debug!("virtio-iommu: notification for nonexistent queue {index} ignored");
                Ok(())
            }
        }
    }

    /// The driver waits for every request (Linux's `viommu_sync_req` spins
    /// on the used ring): answer on the notifying vCPU's thread.
    fn notify_inline(&self) -> bool {
        true
    }

    /// Device reset (5.13.5): every endpoint is detached, every domain and
    /// mapping is gone, waiting faults are dropped; `bypass` keeps its
    /// value (5.13.4.2: it is restored only on system reset, which here is
    /// a new device).
    fn reset(&mut self) {
        self.active = None;
        {
            let mut faults = lock(&self.shared.faults);
            faults.sink = None;
            faults.pending.clear();
        }
        let mut state = write(&self.shared.state);
        state.reset();
        for ep in self.shared.endpoints.values() {
            ep.invalidate_all();
        }
    }
}

/// What a request produces.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Unknown type: the chain is returned untouched.
    Unrecognized,
    /// A status for the tail.
    Status(Status),
    /// A PROBE's properties, with `S_OK`.
    Probe(Vec<u8>),
}

impl From<Result<(), Status>> for Reply {
    fn from(r: Result<(), Status>) -> Self {
        Reply::Status(r.err().unwrap_or(Status::Ok))
    }
}

/// Serves one request chain; returns its used length.
fn handle_request<M: GuestMemory>(shared: &IommuState, acked: u64, mem: &M, buffers: &[Buffer]) -> u32 {
    let split = buffers.iter().position(|b| b.write_only).unwrap_or(buffers.len());
    let (readable, writable) = buffers.split_at(split);
    if writable.iter().any(|b| !b.write_only) {
        log::debug!("virtio-iommu: device-readable descriptor after a writable one; request returned unused");
        return 0;
    }
    let writable_len: usize = writable.iter().map(|b| b.len as usize).sum();
    if writable_len < TAIL_SIZE {
        log::debug!("virtio-iommu: no room for the tail; request returned unused");
        return 0;
    }
    if let Err(e) = slices(mem, writable, writable_len, Permissions::Write) {
        log::debug!("virtio-iommu: writable part not accessible ({e}); request returned unused");
        return 0;
    }
    let status = match serve(shared, acked, mem, readable, writable_len - TAIL_SIZE) {
        Reply::Unrecognized => return 0,
        Reply::Status(s) => s,
        Reply::Probe(properties) => match write_at(mem, writable, 0, &properties) {
            Ok(()) => Status::Ok,
            Err(e) => {
                dmavm_devices::guest_log!(static log::Level::Warn, "virtio-iommu: writing PROBE properties: {e}");
                Status::DevErr
            }
        },
    };
    if let Err(e) = write_at(mem, writable, writable_len - TAIL_SIZE, &tail(status)) {
        dmavm_devices::guest_log!(static log::Level::Warn, "virtio-iommu: writing the status: {e}; request returned unused");
        return 0;
    }
    // A chain never adds up to more than 2^32 bytes (`walk`).
    u32::try_from(writable_len).unwrap_or(0)
}

/// Reads and executes the request in `readable`; `properties_len` is the
/// room before the tail.
fn serve<M: GuestMemory>(
    shared: &IommuState,
    acked: u64,
    mem: &M,
    readable: &[Buffer],
    properties_len: usize,
) -> Reply {
    let readable_len: usize = readable.iter().map(|b| b.len as usize).sum();
    if readable_len < HEAD_SIZE {
        return Reply::Status(Status::Inval);
    }
    let head = match read_prefix(mem, readable, HEAD_SIZE) {
        Ok(h) => h,
        Err(e) => {
            log::debug!("virtio-iommu: request head not readable: {e}");
            return Reply::Status(Status::IoErr);
        }
    };
    let kind = head[0];
    let Some(size) = readable_size(kind) else {
        log::debug!("virtio-iommu: unknown request type {kind}; request returned unused");
        return Reply::Unrecognized;
    };
    if readable_len < size {
        return Reply::Status(Status::Inval);
    }
    let bytes = match read_prefix(mem, readable, size) {
        Ok(b) => b,
        Err(e) => {
            log::debug!("virtio-iommu: request not readable: {e}");
            return Reply::Status(Status::IoErr);
        }
    };
    let Some(req) = request::parse(kind, &bytes) else { return Reply::Status(Status::Inval) };
    execute(shared, acked, req, properties_len)
}

/// Executes a decoded request, invalidating IOTLBs as it requires.
pub(crate) fn execute(shared: &IommuState, acked: u64, req: Request, properties_len: usize) -> Reply {
    let negotiated = |f: u64| acked & f != 0;
    match req {
        Request::Attach { domain, endpoint, flags, reserved } => {
            let mut state = write(&shared.state);
            let r = state.attach(domain, endpoint, flags, reserved, negotiated(VIRTIO_IOMMU_F_BYPASS_CONFIG));
            match r {
                Ok(()) => shared.invalidate_endpoint(endpoint),
                // The one UNSUPP an ATTACH gets: mixed coherency refused.
                Err(Status::Unsupp) => {
                    if let Some(ep) = shared.endpoints.get(&endpoint) {
                        Counters::bump(&ep.counters.attach_refused);
                    }
                    dmavm_devices::guest_log!(
                        static log::Level::Info,
                        "virtio-iommu: ATTACH of endpoint {endpoint:#x} to domain {domain} refused: its \
                         declared coherency differs from the domain's endpoints' (mixed-coherency=reject)"
                    );
                }
                Err(_) => {}
            }
            r.into()
        }
        Request::Detach { domain, endpoint } => {
            let mut state = write(&shared.state);
            let r = state.detach(domain, endpoint);
            if r.is_ok() {
                shared.invalidate_endpoint(endpoint);
            }
            r.into()
        }
        Request::Map { domain, virt_start, virt_end, phys_start, flags } => {
            if !negotiated(VIRTIO_IOMMU_F_MAP_UNMAP) {
                return Reply::Status(Status::Unsupp);
            }
            let mut state = write(&shared.state);
            for ep in state.endpoints_of(domain) {
                if let Some(ep) = shared.endpoints.get(&ep) {
                    Counters::bump(&ep.counters.map_requests);
                }
            }
            let r =
                state.map(domain, virt_start, virt_end, phys_start, flags, negotiated(VIRTIO_IOMMU_F_MMIO));
            if r.is_ok() {
                // Adding a mapping never makes a cached translation stale;
                // caching it now saves the device's first access a miss.
                let permissions = Mapping { end: virt_end, phys: phys_start, flags }.permissions();
                for ep in state.endpoints_of(domain) {
                    if let Some(ep) = shared.endpoints.get(&ep) {
                        ep.prefill(virt_start, virt_end, phys_start, permissions);
                    }
                }
            }
            r.into()
        }
        Request::Unmap { domain, virt_start, virt_end } => {
            if !negotiated(VIRTIO_IOMMU_F_MAP_UNMAP) {
                return Reply::Status(Status::Unsupp);
            }
            let mut state = write(&shared.state);
            let endpoints = state.endpoints_of(domain);
            for ep in &endpoints {
                if let Some(ep) = shared.endpoints.get(ep) {
                    Counters::bump(&ep.counters.unmap_requests);
                }
            }
            match state.unmap(domain, virt_start, virt_end) {
                Ok(removed) => {
                    for ep in endpoints.iter().filter_map(|ep| shared.endpoints.get(ep)) {
                        for &(start, end) in &removed {
                            ep.invalidate(start, end);
                        }
                    }
                    Reply::Status(Status::Ok)
                }
                Err(s) => Reply::Status(s),
            }
        }
        Request::Probe { endpoint } => {
            if !negotiated(VIRTIO_IOMMU_F_PROBE) {
                return Reply::Status(Status::Unsupp);
            }
            let probe_size = shared.config.probe_size as usize;
            if properties_len < probe_size {
                return Reply::Status(Status::Inval);
            }
            if !shared.endpoints.contains_key(&endpoint) {
                return Reply::Status(Status::NoEnt);
            }
            Reply::Probe(probe_properties(&shared.regions, probe_size))
        }
    }
}

/// The first `len` bytes of `buffers` (which hold at least that many).
fn read_prefix<M: GuestMemory>(mem: &M, buffers: &[Buffer], len: usize) -> Result<Vec<u8>, GuestMemoryError> {
    let mut out = vec![0u8; len];
    let mut at = 0;
    for s in slices(mem, buffers, len, Permissions::Read)? {
        at += s.copy_to(&mut out[at..]);
    }
    Ok(out)
}

/// Writes `data` at byte `offset` of the concatenation of `buffers`.
fn write_at<M: GuestMemory>(
    mem: &M,
    buffers: &[Buffer],
    offset: usize,
    data: &[u8],
) -> Result<(), GuestMemoryError> {
    let mut skip = offset;
    let mut rest = data;
    for b in buffers {
        if rest.is_empty() {
            break;
        }
        let len = b.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(rest.len());
        let addr = b.addr.checked_add(skip as u64).ok_or(GuestMemoryError::GuestAddressOverflow)?;
        mem.write_slice(&rest[..n], addr)?;
        rest = &rest[n..];
        skip = 0;
    }
    Ok(())
}
