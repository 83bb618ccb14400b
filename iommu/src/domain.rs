//! Domains, their mappings and which endpoint is attached where: the
//! IOMMU's architectural state, changed by ATTACH, DETACH, MAP and UNMAP
//! (virtio 1.2, 5.13.6) and consulted on IOTLB misses.
//!
//! Every operation validates the whole request before it changes anything,
//! so a rejected request leaves the state exactly as it was. IOTLBs are not
//! kept here: the caller invalidates them from what an operation reports,
//! while it still holds the lock on this state.

use std::collections::{BTreeMap, BTreeSet};

use vm_memory::Permissions;

use crate::request::{
    ReservedRegion, Status, VIRTIO_IOMMU_ATTACH_F_BYPASS, VIRTIO_IOMMU_FAULT_R_DOMAIN,
    VIRTIO_IOMMU_FAULT_R_MAPPING, VIRTIO_IOMMU_MAP_F_MMIO, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE,
};

/// One MAP request's worth of translation: `[start, end]` (the start is the
/// key of [`Domain::mappings`]) to `phys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// Last IOVA (inclusive).
    pub(crate) end: u64,
    /// Guest-physical address of the first IOVA.
    pub(crate) phys: u64,
    /// `VIRTIO_IOMMU_MAP_F_*`.
    pub(crate) flags: u32,
}

impl Mapping {
    /// The accesses the mapping allows.
    pub(crate) fn permissions(&self) -> Permissions {
        let read = self.flags & VIRTIO_IOMMU_MAP_F_READ != 0;
        let write = self.flags & VIRTIO_IOMMU_MAP_F_WRITE != 0;
        match (read, write) {
            (true, true) => Permissions::ReadWrite,
            (true, false) => Permissions::Read,
            (false, true) => Permissions::Write,
            (false, false) => Permissions::No,
        }
    }
}

/// A domain: an address space shared by the endpoints attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Domain {
    /// Created with `VIRTIO_IOMMU_ATTACH_F_BYPASS`: identity, no mappings.
    pub(crate) bypass: bool,
    /// The endpoints attached to it (never empty: the last DETACH frees the
    /// domain).
    pub(crate) endpoints: BTreeSet<u32>,
    /// Mappings by first IOVA; they never overlap.
    pub(crate) mappings: BTreeMap<u64, Mapping>,
}

/// The limits requests are checked against (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Endpoints declared non-coherent, when domains must not mix them with
    /// coherent ones (`MixedCoherency::Reject`); `None` when they may.
    pub(crate) coherency_classes: Option<BTreeSet<u32>>,
    pub(crate) granule: u64,
    pub(crate) input_range: (u64, u64),
    pub(crate) domain_range: (u32, u32),
    pub(crate) max_mappings: usize,
    pub(crate) reserved: Vec<ReservedRegion>,
}

/// What an endpoint's access resolves to on an IOTLB miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// The endpoint is in bypass mode: the identity, read and write.
    Identity,
    /// The mappings that cover the access, in IOVA order, each whole:
    /// `(first IOVA, mapping)`.
    Mapped(Vec<(u64, Mapping)>),
}

/// Why an access cannot be translated: `(VIRTIO_IOMMU_FAULT_R_*, first
/// address that failed)`.
pub(crate) type Unresolved = (u8, u64);

/// The IOMMU's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// The `bypass` configuration field.
    pub(crate) bypass: bool,
    /// Every endpoint the VMM put in the IOMMU's scope.
    pub(crate) known: BTreeSet<u32>,
    /// Endpoint to the domain it is attached to.
    pub(crate) attached: BTreeMap<u32, u32>,
    /// Domains by ID (only while an endpoint is attached to them).
    pub(crate) domains: BTreeMap<u32, Domain>,
    /// Mappings in all domains together.
    pub(crate) mapping_count: usize,
    pub(crate) limits: Limits,
    /// Whether the driver has attached an endpoint since the device was
    /// created (resets included): an IOMMU whose driver never attaches
    /// anything is one the guest has no driver for.
    pub(crate) ever_attached: bool,
}

impl State {
    pub(crate) fn new(bypass: bool, known: BTreeSet<u32>, limits: Limits) -> Self {
        Self {
            bypass,
            known,
            attached: BTreeMap::new(),
            domains: BTreeMap::new(),
            mapping_count: 0,
            limits,
            ever_attached: false,
        }
    }

    fn check_domain_range(&self, domain: u32) -> Result<(), Status> {
        let (first, last) = self.limits.domain_range;
        if domain < first || domain > last {
            return Err(Status::Range);
        }
        Ok(())
    }

    fn check_input_range(&self, start: u64, end: u64) -> Result<(), Status> {
        let (first, last) = self.limits.input_range;
        if start < first || end > last {
            return Err(Status::Range);
        }
        Ok(())
    }

    /// The endpoints attached to `domain` (empty if it does not exist).
    pub(crate) fn endpoints_of(&self, domain: u32) -> Vec<u32> {
        self.domains.get(&domain).map(|d| d.endpoints.iter().copied().collect()).unwrap_or_default()
    }

    /// Detaches `endpoint` from its domain, if any, and frees the domain if
    /// it was the last endpoint (its mappings go with it).
    pub(crate) fn detach_any(&mut self, endpoint: u32) {
        let Some(domain) = self.attached.remove(&endpoint) else { return };
        let Some(d) = self.domains.get_mut(&domain) else { return };
        d.endpoints.remove(&endpoint);
        if d.endpoints.is_empty() {
            if let Some(freed) = self.domains.remove(&domain) {
                self.mapping_count -= freed.mappings.len();
            }
        }
    }

    /// ATTACH (virtio 1.2, 5.13.6.3). `bypass_negotiated`:
    /// `VIRTIO_IOMMU_F_BYPASS_CONFIG` was negotiated, so
    /// `VIRTIO_IOMMU_ATTACH_F_BYPASS` is a known flag.
    ///
    /// An endpoint attached elsewhere is detached first (its old domain is
    /// freed if it becomes empty); attaching it again to its own domain
    /// changes nothing.
    pub(crate) fn attach(
        &mut self,
        domain: u32,
        endpoint: u32,
        flags: u32,
        reserved: [u8; 4],
        bypass_negotiated: bool,
    ) -> Result<(), Status> {
        let known_flags = if bypass_negotiated { VIRTIO_IOMMU_ATTACH_F_BYPASS } else { 0 };
        if reserved != [0; 4] || flags & !known_flags != 0 {
            return Err(Status::Inval);
        }
        if !self.known.contains(&endpoint) {
            return Err(Status::NoEnt);
        }
        self.check_domain_range(domain)?;
        let bypass = flags & VIRTIO_IOMMU_ATTACH_F_BYPASS != 0;
        if let Some(d) = self.domains.get(&domain) {
            if d.bypass != bypass {
                return Err(Status::Inval);
            }
        }
        if self.attached.get(&endpoint) == Some(&domain) {
            return Ok(());
        }
        if let (Some(noncoherent), Some(d)) = (&self.limits.coherency_classes, self.domains.get(&domain)) {
            let class = |ep: &u32| noncoherent.contains(ep);
            if !d.bypass && d.endpoints.iter().any(|other| class(other) != class(&endpoint)) {
                return Err(Status::Unsupp);
            }
        }
        self.detach_any(endpoint);
        let d = self.domains.entry(domain).or_insert_with(|| Domain { bypass, ..Domain::default() });
        d.endpoints.insert(endpoint);
        self.attached.insert(endpoint, domain);
        self.ever_attached = true;
        Ok(())
    }

    /// DETACH (5.13.6.4): `NOENT` for an unknown endpoint, `INVAL` if it is
    /// not attached to `domain`.
    pub(crate) fn detach(&mut self, domain: u32, endpoint: u32) -> Result<(), Status> {
        if !self.known.contains(&endpoint) {
            return Err(Status::NoEnt);
        }
        self.check_domain_range(domain)?;
        if self.attached.get(&endpoint) != Some(&domain) {
            return Err(Status::Inval);
        }
        self.detach_any(endpoint);
        Ok(())
    }

    /// MAP (5.13.6.5). `mmio_negotiated`: `VIRTIO_IOMMU_F_MMIO` was
    /// negotiated, so `VIRTIO_IOMMU_MAP_F_MMIO` is a known flag.
    pub(crate) fn map(
        &mut self,
        domain: u32,
        virt_start: u64,
        virt_end: u64,
        phys_start: u64,
        flags: u32,
        mmio_negotiated: bool,
    ) -> Result<(), Status> {
        let mut known_flags = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
        if mmio_negotiated {
            known_flags |= VIRTIO_IOMMU_MAP_F_MMIO;
        }
        if flags & !known_flags != 0 {
            return Err(Status::Inval);
        }
        self.check_domain_range(domain)?;
        let d = self.domains.get(&domain).ok_or(Status::NoEnt)?;
        if d.bypass || virt_end < virt_start {
            return Err(Status::Inval);
        }
        self.check_input_range(virt_start, virt_end)?;
        let g = self.limits.granule;
        // `virt_end` is below the input range's end, itself below u64::MAX.
        let aligned = |a: u64| a % g == 0;
        if !aligned(virt_start) || !aligned(phys_start) || !virt_end.checked_add(1).is_some_and(aligned) {
            return Err(Status::Range);
        }
        if phys_start.checked_add(virt_end - virt_start).is_none() {
            return Err(Status::Range);
        }
        if self.limits.reserved.iter().any(|r| r.start <= virt_end && r.end >= virt_start) {
            return Err(Status::Range);
        }
        if let Some((_, m)) = d.mappings.range(..=virt_end).next_back() {
            // The mapping starting last at or before `virt_end` is the only
            // one that can overlap (mappings do not overlap each other).
            if m.end >= virt_start {
                return Err(Status::Inval);
            }
        }
        if self.mapping_count >= self.limits.max_mappings {
            return Err(Status::NoMem);
        }
        let d = self.domains.get_mut(&domain).ok_or(Status::NoEnt)?;
        d.mappings.insert(virt_start, Mapping { end: virt_end, phys: phys_start, flags });
        self.mapping_count += 1;
        Ok(())
    }

    /// UNMAP (5.13.6.6): removes every mapping inside `[virt_start,
    /// virt_end]`; a mapping only partly inside makes the request fail with
    /// `RANGE` and nothing is removed. Returns the removed ranges
    /// (inclusive), for IOTLB invalidation.
    pub(crate) fn unmap(
        &mut self,
        domain: u32,
        virt_start: u64,
        virt_end: u64,
    ) -> Result<Vec<(u64, u64)>, Status> {
        self.check_domain_range(domain)?;
        let d = self.domains.get(&domain).ok_or(Status::NoEnt)?;
        if d.bypass || virt_end < virt_start {
            return Err(Status::Inval);
        }
        self.check_input_range(virt_start, virt_end)?;
        // A mapping starting before the range that reaches into it.
        if let Some((_, m)) = d.mappings.range(..virt_start).next_back() {
            if m.end >= virt_start {
                return Err(Status::Range);
            }
        }
        // The last mapping starting inside the range must end inside it.
        if let Some((_, m)) = d.mappings.range(virt_start..=virt_end).next_back() {
            if m.end > virt_end {
                return Err(Status::Range);
            }
        }
        let d = self.domains.get_mut(&domain).ok_or(Status::NoEnt)?;
        let starts: Vec<u64> = d.mappings.range(virt_start..=virt_end).map(|(s, _)| *s).collect();
        let mut removed = Vec::with_capacity(starts.len());
        for s in starts {
            if let Some(m) = d.mappings.remove(&s) {
                removed.push((s, m.end));
            }
        }
        self.mapping_count -= removed.len();
        Ok(removed)
    }

    /// Device reset (5.13.5): no endpoint is attached to any domain.
    /// `bypass` keeps its value.
    pub(crate) fn reset(&mut self) {
        self.attached.clear();
        self.domains.clear();
        self.mapping_count = 0;
    }

    /// Whether `endpoint` is in bypass mode (5.13.6): unattached while the
    /// `bypass` field is 1, or attached to a bypass domain.
    pub(crate) fn in_bypass(&self, endpoint: u32) -> bool {
        match self.attached.get(&endpoint) {
            None => self.bypass,
            Some(domain) => self.domains.get(domain).is_some_and(|d| d.bypass),
        }
    }

    /// How `endpoint` reaches `[start, end)` with `access`: the identity in
    /// bypass mode, else the mappings of its domain, which must cover the
    /// whole range contiguously and allow `access`.
    pub(crate) fn resolve(
        &self,
        endpoint: u32,
        start: u64,
        end: u64,
        access: Permissions,
    ) -> Result<Resolution, Unresolved> {
        if self.in_bypass(endpoint) {
            return Ok(Resolution::Identity);
        }
        let domain = self
            .attached
            .get(&endpoint)
            .and_then(|d| self.domains.get(d))
            .ok_or((VIRTIO_IOMMU_FAULT_R_DOMAIN, start))?;
        let mut found = Vec::new();
        let mut cursor = start;
        while cursor < end {
            let (first, m) = domain
                .mappings
                .range(..=cursor)
                .next_back()
                .filter(|(_, m)| m.end >= cursor)
                .ok_or((VIRTIO_IOMMU_FAULT_R_MAPPING, cursor))?;
            if !m.permissions().allow(access) {
                return Err((VIRTIO_IOMMU_FAULT_R_MAPPING, cursor));
            }
            found.push((*first, *m));
            // Mappings end below the input range's end (< u64::MAX).
            match m.end.checked_add(1) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(Resolution::Mapped(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ReservedKind;

    const RW: u32 = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;

    fn state() -> State {
        State::new(
            false,
            [1, 2, 3].into_iter().collect(),
            Limits {
                coherency_classes: None,
                granule: 0x1000,
                input_range: (0, (1 << 48) - 1),
                domain_range: (0, 100),
                max_mappings: 4,
                reserved: vec![ReservedRegion {
                    start: 0xfee0_0000,
                    end: 0xfeef_ffff,
                    kind: ReservedKind::Msi,
                }],
            },
        )
    }

    /// The spec's UNMAP examples (5.13.6.6), in pages of 0x1000.
    #[test]
    fn unmap_examples_from_the_spec() {
        let p = |n: u64| n * 0x1000;
        let end = |n: u64| n * 0x1000 + 0xfff;
        type Case = (&'static [(u64, u64)], (u64, u64), Result<usize, Status>, usize);
        let cases: &[Case] = &[
            (&[], (0, 4), Ok(0), 0),
            (&[(0, 9)], (0, 9), Ok(1), 0),
            (&[(0, 4), (5, 9)], (0, 9), Ok(2), 0),
            (&[(0, 9)], (0, 4), Err(Status::Range), 1),
            (&[(0, 4), (5, 9)], (0, 4), Ok(1), 1),
            (&[(0, 4)], (0, 9), Ok(1), 0),
            (&[(0, 4), (10, 14)], (0, 14), Ok(2), 0),
            // Starting inside a mapping.
            (&[(0, 9)], (5, 14), Err(Status::Range), 1),
        ];
        for (i, (maps, (us, ue), result, left)) in cases.iter().enumerate() {
            let mut s = state();
            s.attach(1, 1, 0, [0; 4], true).unwrap();
            for &(ms, me) in *maps {
                s.map(1, p(ms), end(me), p(ms) + 0x10_0000, RW, false).unwrap();
            }
            let before = s.clone();
            let r = s.unmap(1, p(*us), end(*ue)).map(|v| v.len());
            assert_eq!(r, *result, "case {}", i + 1);
            assert_eq!(s.domains[&1].mappings.len(), *left, "case {}", i + 1);
            assert_eq!(s.mapping_count, *left, "case {}", i + 1);
            if result.is_err() {
                assert_eq!(s, before, "case {}", i + 1);
            }
        }
    }

    #[test]
    fn mapping_limit_is_nomem() {
        let mut s = state();
        s.attach(1, 1, 0, [0; 4], false).unwrap();
        for i in 0..4u64 {
            s.map(1, i * 0x1000, i * 0x1000 + 0xfff, 0, RW, false).unwrap();
        }
        let before = s.clone();
        assert_eq!(s.map(1, 0x10000, 0x10fff, 0, RW, false), Err(Status::NoMem));
        assert_eq!(s, before);
        // Freeing the domain gives the mappings back.
        s.detach(1, 1).unwrap();
        assert_eq!(s.mapping_count, 0);
    }

    #[test]
    fn resolve_walks_adjacent_mappings_and_checks_permissions() {
        let mut s = state();
        s.attach(1, 1, 0, [0; 4], false).unwrap();
        s.map(1, 0x1000, 0x1fff, 0x8000, RW, false).unwrap();
        s.map(1, 0x2000, 0x2fff, 0x4000, VIRTIO_IOMMU_MAP_F_READ, false).unwrap();
        let r = s.resolve(1, 0x1800, 0x2800, Permissions::Read).unwrap();
        assert_eq!(
            r,
            Resolution::Mapped(vec![
                (0x1000, Mapping { end: 0x1fff, phys: 0x8000, flags: RW }),
                (0x2000, Mapping { end: 0x2fff, phys: 0x4000, flags: VIRTIO_IOMMU_MAP_F_READ }),
            ])
        );
        assert_eq!(
            s.resolve(1, 0x1800, 0x2800, Permissions::Write),
            Err((VIRTIO_IOMMU_FAULT_R_MAPPING, 0x2000))
        );
        assert_eq!(
            s.resolve(1, 0x2800, 0x3001, Permissions::Read),
            Err((VIRTIO_IOMMU_FAULT_R_MAPPING, 0x3000))
        );
        assert_eq!(
            s.resolve(2, 0x1000, 0x1001, Permissions::Read),
            Err((VIRTIO_IOMMU_FAULT_R_DOMAIN, 0x1000))
        );
        s.bypass = true;
        assert_eq!(s.resolve(2, 0x1000, 0x1001, Permissions::Read), Ok(Resolution::Identity));
    }
}
