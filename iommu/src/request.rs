//! Wire formats of virtio-iommu (virtio 1.2, 5.13.6): request types and
//! status codes, the device-readable part of each request, the PROBE
//! properties and the fault report. All fields are little-endian.

/// `VIRTIO_IOMMU_T_ATTACH`.
pub const VIRTIO_IOMMU_T_ATTACH: u8 = 1;
/// `VIRTIO_IOMMU_T_DETACH`.
pub const VIRTIO_IOMMU_T_DETACH: u8 = 2;
/// `VIRTIO_IOMMU_T_MAP`.
pub const VIRTIO_IOMMU_T_MAP: u8 = 3;
/// `VIRTIO_IOMMU_T_UNMAP`.
pub const VIRTIO_IOMMU_T_UNMAP: u8 = 4;
/// `VIRTIO_IOMMU_T_PROBE`.
pub const VIRTIO_IOMMU_T_PROBE: u8 = 5;

/// `VIRTIO_IOMMU_ATTACH_F_BYPASS`: the domain is a bypass domain.
pub const VIRTIO_IOMMU_ATTACH_F_BYPASS: u32 = 1 << 0;

/// `VIRTIO_IOMMU_MAP_F_READ`.
pub const VIRTIO_IOMMU_MAP_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_MAP_F_WRITE`.
pub const VIRTIO_IOMMU_MAP_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_MAP_F_MMIO` (only with `VIRTIO_IOMMU_F_MMIO`).
pub const VIRTIO_IOMMU_MAP_F_MMIO: u32 = 1 << 2;

/// `VIRTIO_IOMMU_PROBE_T_NONE`: ends the property list.
pub const VIRTIO_IOMMU_PROBE_T_NONE: u16 = 0;
/// `VIRTIO_IOMMU_PROBE_T_RESV_MEM`.
pub const VIRTIO_IOMMU_PROBE_T_RESV_MEM: u16 = 1;
/// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`.
pub const VIRTIO_IOMMU_RESV_MEM_T_RESERVED: u8 = 0;
/// `VIRTIO_IOMMU_RESV_MEM_T_MSI`.
pub const VIRTIO_IOMMU_RESV_MEM_T_MSI: u8 = 1;

/// `VIRTIO_IOMMU_FAULT_R_UNKNOWN`.
pub const VIRTIO_IOMMU_FAULT_R_UNKNOWN: u8 = 0;
/// `VIRTIO_IOMMU_FAULT_R_DOMAIN`: the endpoint is not attached to a domain.
pub const VIRTIO_IOMMU_FAULT_R_DOMAIN: u8 = 1;
/// `VIRTIO_IOMMU_FAULT_R_MAPPING`: no mapping, or not with this permission.
pub const VIRTIO_IOMMU_FAULT_R_MAPPING: u8 = 2;
/// `VIRTIO_IOMMU_FAULT_F_READ`.
pub const VIRTIO_IOMMU_FAULT_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_FAULT_F_WRITE`.
pub const VIRTIO_IOMMU_FAULT_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_FAULT_F_ADDRESS`: `address` is valid.
pub const VIRTIO_IOMMU_FAULT_F_ADDRESS: u32 = 1 << 8;

/// Size of `struct virtio_iommu_req_head`.
pub const HEAD_SIZE: usize = 4;
/// Size of `struct virtio_iommu_req_tail`.
pub const TAIL_SIZE: usize = 4;
/// Size of `struct virtio_iommu_fault`.
pub const FAULT_SIZE: usize = 24;

/// A request status (`VIRTIO_IOMMU_S_*`), written in the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// `VIRTIO_IOMMU_S_OK`.
    Ok = 0,
    /// `VIRTIO_IOMMU_S_IOERR`: virtio communication error (a device-readable
    /// buffer could not be read).
    IoErr = 1,
    /// `VIRTIO_IOMMU_S_UNSUPP`: a request the negotiated features do not
    /// allow.
    Unsupp = 2,
    /// `VIRTIO_IOMMU_S_DEVERR`: internal device error.
    DevErr = 3,
    /// `VIRTIO_IOMMU_S_INVAL`: invalid parameters.
    Inval = 4,
    /// `VIRTIO_IOMMU_S_RANGE`: out-of-range parameters.
    Range = 5,
    /// `VIRTIO_IOMMU_S_NOENT`: no such endpoint or domain.
    NoEnt = 6,
    /// `VIRTIO_IOMMU_S_FAULT`: bad address.
    Fault = 7,
    /// `VIRTIO_IOMMU_S_NOMEM`: insufficient resources.
    NoMem = 8,
}

/// A request's device-readable part, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `struct virtio_iommu_req_attach`.
    Attach { domain: u32, endpoint: u32, flags: u32, reserved: [u8; 4] },
    /// `struct virtio_iommu_req_detach` (`reserved` is ignored).
    Detach { domain: u32, endpoint: u32 },
    /// `struct virtio_iommu_req_map`.
    Map { domain: u32, virt_start: u64, virt_end: u64, phys_start: u64, flags: u32 },
    /// `struct virtio_iommu_req_unmap` (`reserved` is ignored).
    Unmap { domain: u32, virt_start: u64, virt_end: u64 },
    /// `struct virtio_iommu_req_probe` (`reserved` is ignored).
    Probe { endpoint: u32 },
}

/// Size of the device-readable part of a request of type `kind`, head
/// included; `None` for a type this device does not know.
pub fn readable_size(kind: u8) -> Option<usize> {
    match kind {
        // head, domain, endpoint, flags, reserved[4]
        VIRTIO_IOMMU_T_ATTACH => Some(HEAD_SIZE + 4 + 4 + 4 + 4),
        // head, domain, endpoint, reserved[8]
        VIRTIO_IOMMU_T_DETACH => Some(HEAD_SIZE + 4 + 4 + 8),
        // head, domain, virt_start, virt_end, phys_start, flags
        VIRTIO_IOMMU_T_MAP => Some(HEAD_SIZE + 4 + 8 + 8 + 8 + 4),
        // head, domain, virt_start, virt_end, reserved[4]
        VIRTIO_IOMMU_T_UNMAP => Some(HEAD_SIZE + 4 + 8 + 8 + 4),
        // head, endpoint, reserved[64]
        VIRTIO_IOMMU_T_PROBE => Some(HEAD_SIZE + 4 + 64),
        _ => None,
    }
}

/// Little-endian field reader over a request's bytes.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(self.at..self.at + N) {
            out.copy_from_slice(src);
        }
        self.at += N;
        out
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Decodes a request of type `kind` from `bytes`, which must hold at least
/// [`readable_size`]`(kind)` bytes (the head included); `None` for an
/// unknown type or too few bytes.
pub fn parse(kind: u8, bytes: &[u8]) -> Option<Request> {
    if bytes.len() < readable_size(kind)? {
        return None;
    }
    let mut f = Fields { bytes, at: HEAD_SIZE };
    Some(match kind {
        VIRTIO_IOMMU_T_ATTACH => {
            Request::Attach { domain: f.u32(), endpoint: f.u32(), flags: f.u32(), reserved: f.take() }
        }
        VIRTIO_IOMMU_T_DETACH => Request::Detach { domain: f.u32(), endpoint: f.u32() },
        VIRTIO_IOMMU_T_MAP => Request::Map {
            domain: f.u32(),
            virt_start: f.u64(),
            virt_end: f.u64(),
            phys_start: f.u64(),
            flags: f.u32(),
        },
        VIRTIO_IOMMU_T_UNMAP => Request::Unmap { domain: f.u32(), virt_start: f.u64(), virt_end: f.u64() },
        VIRTIO_IOMMU_T_PROBE => Request::Probe { endpoint: f.u32() },
        _ => return None,
    })
}

/// The tail as the device writes it: the status, reserved bytes zero.
pub fn tail(status: Status) -> [u8; TAIL_SIZE] {
    [status as u8, 0, 0, 0]
}

/// What kind of reserved region a RESV_MEM property describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedKind {
    /// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`: not to be mapped.
    Reserved,
    /// `VIRTIO_IOMMU_RESV_MEM_T_MSI`: an MSI doorbell, not to be mapped.
    Msi,
}

/// A reserved IOVA region (inclusive), reported by PROBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedRegion {
    /// First address.
    pub start: u64,
    /// Last address.
    pub end: u64,
    /// Subtype.
    pub kind: ReservedKind,
}

/// The `properties` of a PROBE reply, exactly `probe_size` bytes: one
/// RESV_MEM property per region, in the given order, then zeros (the first
/// four of which are the `VIRTIO_IOMMU_PROBE_T_NONE` terminator). Regions
/// that would not fit are left out (construction checks that they fit).
pub fn probe_properties(regions: &[ReservedRegion], probe_size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(probe_size);
    for r in regions {
        if out.len() + 24 > probe_size {
            break;
        }
        let subtype = match r.kind {
            ReservedKind::Reserved => VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
            ReservedKind::Msi => VIRTIO_IOMMU_RESV_MEM_T_MSI,
        };
        out.extend_from_slice(&VIRTIO_IOMMU_PROBE_T_RESV_MEM.to_le_bytes());
        // Length without the 4-byte property header: subtype, reserved[3],
        // start, end.
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&[subtype, 0, 0, 0]);
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&r.end.to_le_bytes());
    }
    out.resize(probe_size, 0);
    out
}

/// A translation fault, as reported on the event queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// `VIRTIO_IOMMU_FAULT_R_*`.
    pub reason: u8,
    /// `VIRTIO_IOMMU_FAULT_F_*`.
    pub flags: u32,
    /// The endpoint whose access faulted.
    pub endpoint: u32,
    /// The first address that could not be accessed.
    pub address: u64,
}

impl Fault {
    /// `struct virtio_iommu_fault`, reserved fields zero.
    pub fn to_bytes(&self) -> [u8; FAULT_SIZE] {
        let mut b = [0u8; FAULT_SIZE];
        b[0] = self.reason;
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.endpoint.to_le_bytes());
        b[16..24].copy_from_slice(&self.address.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_spec_structures() {
        assert_eq!(readable_size(VIRTIO_IOMMU_T_ATTACH), Some(20));
        assert_eq!(readable_size(VIRTIO_IOMMU_T_DETACH), Some(20));
        assert_eq!(readable_size(VIRTIO_IOMMU_T_MAP), Some(36));
        assert_eq!(readable_size(VIRTIO_IOMMU_T_UNMAP), Some(28));
        assert_eq!(readable_size(VIRTIO_IOMMU_T_PROBE), Some(72));
        assert_eq!(readable_size(0), None);
        assert_eq!(readable_size(6), None);
    }

    #[test]
    fn parses_little_endian_fields() {
        let mut b = vec![VIRTIO_IOMMU_T_MAP, 0xff, 0xff, 0xff];
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&0x1000u64.to_le_bytes());
        b.extend_from_slice(&0x1fffu64.to_le_bytes());
        b.extend_from_slice(&0xa000u64.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            parse(VIRTIO_IOMMU_T_MAP, &b),
            Some(Request::Map {
                domain: 7,
                virt_start: 0x1000,
                virt_end: 0x1fff,
                phys_start: 0xa000,
                flags: 3
            })
        );
        assert_eq!(parse(VIRTIO_IOMMU_T_MAP, &b[..35]), None);
        assert_eq!(parse(9, &b), None);
    }

    #[test]
    fn fault_layout() {
        let f = Fault { reason: 2, flags: 0x102, endpoint: 0x0304, address: 0x1122_3344_5566_7788 };
        assert_eq!(
            f.to_bytes(),
            [
                2, 0, 0, 0, 0x02, 0x01, 0, 0, 0x04, 0x03, 0, 0, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44,
                0x33, 0x22, 0x11
            ]
        );
    }
}
