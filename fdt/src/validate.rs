//! Checks that a [`Machine`] can be described truthfully before anything is encoded.

use std::collections::HashSet;

use crate::description::{pci_name, Machine, MemoryRange, PciIommuScope, PciRoot, VirtioIommu};
use crate::error::Error;

/// The affinity fields of MPIDR_EL1 (Aff3 in 39:32, Aff2-Aff0 in 23:0): what a `cpu` node's `reg`
/// holds (Documentation/devicetree/bindings/arm/cpus.yaml).
pub(crate) const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// Size of one vCPU's GICv3 redistributor (RD_base and SGI_base frames, 64 KiB each).
const REDIST_PER_CPU: u64 = 0x2_0000;
/// Highest SPI number (INTID 1019).
const MAX_SPI: u32 = 987;
/// Highest PPI number (INTID 31).
const MAX_PPI: u32 = 15;

/// How a virtio-mmio device is named in messages.
pub(crate) fn mmio_name(base: u64) -> String {
    format!("virtio-mmio device at {base:#x}")
}

/// How a host bridge is named in messages.
fn root_name(segment: u16) -> String {
    format!("PCI host bridge of segment {segment}")
}

/// The ECAM region a host bridge's `reg` covers: its buses only.
pub(crate) fn ecam_region(root: &PciRoot) -> MemoryRange {
    let buses = u64::from(root.bus_end.saturating_sub(root.bus_start)) + 1;
    MemoryRange::new(root.ecam_base.wrapping_add(u64::from(root.bus_start) << 20), buses << 20)
}

/// Number of requester IDs below a bridge (256 per bus).
pub(crate) fn rid_count(root: &PciRoot) -> u32 {
    (u32::from(root.bus_end.saturating_sub(root.bus_start)) + 1) << 8
}

fn range_text(r: &MemoryRange) -> String {
    format!("{:#x}..{:#x}", r.base, r.base as u128 + r.size as u128)
}

/// Every region of the address map, named; none empty or wrapping, none overlapping another.
fn check_regions(m: &Machine) -> Result<(), Error> {
    let mut regions: Vec<(String, MemoryRange)> = Vec::new();
    for (i, r) in m.memory.iter().enumerate() {
        regions.push((format!("RAM range {i}"), *r));
    }
    regions.push(("the GIC distributor".into(), m.gic.distributor));
    regions.push(("the GIC redistributors".into(), m.gic.redistributors));
    if let Some(its) = m.gic.its {
        regions.push(("the GIC ITS".into(), its));
    }
    regions.push(("the UART".into(), m.uart.region));
    for d in &m.virtio_mmio {
        regions.push((mmio_name(d.region.base), d.region));
    }
    for root in &m.pci_roots {
        let s = root.segment;
        regions.push((format!("the ECAM of PCI segment {s}"), ecam_region(root)));
        regions.push((format!("the 32-bit window of PCI segment {s}"), root.mem32));
        if let Some(w) = root.mem64 {
            regions.push((format!("the 64-bit window of PCI segment {s}"), w));
        }
        if let Some(w) = root.io {
            regions.push((format!("the I/O window of PCI segment {s}"), w));
        }
    }
    for (what, r) in &regions {
        if r.size == 0 {
            return Err(Error::EmptyRegion(what.clone()));
        }
        if r.end().is_none() {
            return Err(Error::RegionWraps { what: what.clone(), base: r.base, size: r.size });
        }
    }
    for (i, (a, ra)) in regions.iter().enumerate() {
        for (b, rb) in &regions[i + 1..] {
            // Neither wraps (checked above), so the ends exist.
            let (ea, eb) = (ra.base + ra.size, rb.base + rb.size);
            if ra.base < eb && rb.base < ea {
                return Err(Error::Overlap {
                    first: a.clone(),
                    first_range: range_text(ra),
                    second: b.clone(),
                    second_range: range_text(rb),
                });
            }
        }
    }
    Ok(())
}

fn check_interrupts(m: &Machine) -> Result<(), Error> {
    let t = &m.timer;
    for (what, ppi) in [
        ("secure physical", t.secure_phys),
        ("physical", t.phys),
        ("virtual", t.virt),
        ("hypervisor physical", t.hyp_phys),
    ] {
        if ppi > MAX_PPI {
            return Err(Error::PpiOutOfRange { what, ppi });
        }
    }
    let mut spis: Vec<(u32, String)> = vec![(m.uart.spi, "the UART".into())];
    spis.extend(m.virtio_mmio.iter().map(|d| (d.spi, mmio_name(d.region.base))));
    for (i, (spi, what)) in spis.iter().enumerate() {
        if *spi > MAX_SPI {
            return Err(Error::SpiOutOfRange { what: what.clone(), spi: *spi });
        }
        if let Some((_, other)) = spis[..i].iter().find(|(s, _)| s == spi) {
            return Err(Error::SharedSpi { spi: *spi, first: other.clone(), second: what.clone() });
        }
    }
    Ok(())
}

fn check_pci(m: &Machine) -> Result<(), Error> {
    if !m.pci_roots.is_empty() && m.gic.its.is_none() {
        return Err(Error::NoIts);
    }
    let mut segments = HashSet::new();
    let mut device_ids: Vec<(u64, u64, u16)> = Vec::new();
    for root in &m.pci_roots {
        let segment = root.segment;
        if !segments.insert(segment) {
            return Err(Error::DuplicatePciSegment(segment));
        }
        if root.bus_end < root.bus_start {
            return Err(Error::PciBusRange { segment, start: root.bus_start, end: root.bus_end });
        }
        if root.ecam_base % (1 << 20) != 0 {
            return Err(Error::PciEcamAlignment { segment, base: root.ecam_base });
        }
        let ecam = ecam_region(root);
        if root.ecam_base.checked_add(u64::from(root.bus_start) << 20).is_none() || ecam.end().is_none() {
            return Err(Error::RegionWraps {
                what: format!("the ECAM of PCI segment {segment}"),
                base: root.ecam_base,
                size: ecam.size,
            });
        }
        if root.mem32.end().is_none_or(|end| end > 1 << 32) {
            return Err(Error::PciMem32Above4G { segment, base: root.mem32.base, size: root.mem32.size });
        }
        if let Some(io) = root.io {
            if io.size > 0x1_0000 {
                return Err(Error::PciIoTooLarge { segment, size: io.size });
            }
        }
        let first = u64::from(root.its_device_base);
        let last = first + u64::from(rid_count(root)) - 1;
        if last > u64::from(u32::MAX) {
            return Err(Error::ItsDeviceIdOverflow { segment, base: root.its_device_base });
        }
        if let Some(&(_, _, other)) = device_ids.iter().find(|(f, l, _)| *f <= last && first <= *l) {
            return Err(Error::ItsDeviceIdsOverlap { first: other, second: segment });
        }
        device_ids.push((first, last, segment));
    }
    Ok(())
}

/// Where the IOMMU is, its scope, and every endpoint ID used once.
fn check_iommu(m: &Machine) -> Result<(), Error> {
    // The IOMMU's own PCI function, if it is one, as (segment, bdf).
    let mut iommu_pci = None;
    match m.iommu {
        None => {
            if let Some(d) = m.virtio_mmio.iter().find(|d| d.iommu_endpoint.is_some()) {
                return Err(Error::NoIommu(mmio_name(d.region.base)));
            }
            if let Some(r) =
                m.pci_roots.iter().find(|r| matches!(&r.iommu, PciIommuScope::Ranges(v) if !v.is_empty()))
            {
                return Err(Error::NoIommu(format!("a function below the {}", root_name(r.segment))));
            }
        }
        Some(VirtioIommu::Mmio { base }) => {
            let device = m
                .virtio_mmio
                .iter()
                .find(|d| d.region.base == base)
                .ok_or(Error::IommuNotMmioDevice(base))?;
            if device.iommu_endpoint.is_some() {
                return Err(Error::IommuInOwnScope(mmio_name(base)));
            }
        }
        Some(VirtioIommu::Pci { segment, bdf }) => {
            let on_root_bus =
                m.pci_roots.iter().any(|r| r.segment == segment && (bdf >> 8) as u8 == r.bus_start);
            if !on_root_bus {
                return Err(Error::IommuNotOnRootBus(pci_name(segment, bdf)));
            }
            iommu_pci = Some((segment, bdf));
        }
    }

    // Endpoint ID intervals (first, last, whose), to find reuse.
    let mut ids: Vec<(u64, u64, String)> = Vec::new();
    for d in &m.virtio_mmio {
        if let Some(id) = d.iommu_endpoint {
            ids.push((u64::from(id), u64::from(id), mmio_name(d.region.base)));
        }
    }
    for root in &m.pci_roots {
        let PciIommuScope::Ranges(ranges) = &root.iommu else { continue };
        let segment = root.segment;
        let buses = (u16::from(root.bus_start) << 8)..=(u16::from(root.bus_end) << 8 | 0xff);
        for (i, r) in ranges.iter().enumerate() {
            let (start, end) = (r.rid_start, r.rid_end);
            if end < start {
                return Err(Error::IommuRangeEmpty { segment, start, end });
            }
            if !buses.contains(&start) || !buses.contains(&end) {
                return Err(Error::IommuRangeOutsideBuses {
                    segment,
                    start,
                    end,
                    bus_start: root.bus_start,
                    bus_end: root.bus_end,
                });
            }
            if let Some(o) = ranges[..i].iter().find(|o| o.rid_start <= end && start <= o.rid_end) {
                return Err(Error::IommuRangesOverlap {
                    segment,
                    first: (o.rid_start, o.rid_end),
                    second: (start, end),
                });
            }
            if let Some((s, bdf)) = iommu_pci {
                if s == segment && (start..=end).contains(&bdf) {
                    return Err(Error::IommuInOwnScope(pci_name(s, bdf)));
                }
            }
            let what = format!("requester IDs {}..={}", pci_name(segment, start), pci_name(segment, end));
            let first = u64::from(r.endpoint_start);
            let last = first + u64::from(end - start);
            if last > u64::from(u32::MAX) {
                return Err(Error::EndpointIdOverflow(what));
            }
            ids.push((first, last, what));
        }
    }
    ids.sort_by_key(|(first, _, _)| *first);
    for pair in ids.windows(2) {
        let ((_, last, a), (first, _, b)) = (&pair[0], &pair[1]);
        if first <= last {
            // The IDs fit 32 bits (checked above).
            return Err(Error::EndpointIdReused { id: *first as u32, first: a.clone(), second: b.clone() });
        }
    }
    Ok(())
}

/// Checks everything [`crate::build`] relies on; see [`Error`] for what is refused.
pub fn validate(m: &Machine) -> Result<(), Error> {
    if m.cpus.is_empty() {
        return Err(Error::NoCpus);
    }
    let mut mpidrs = HashSet::new();
    for mpidr in &m.cpus {
        if !mpidrs.insert(mpidr & MPIDR_AFFINITY) {
            return Err(Error::DuplicateMpidr(mpidr & MPIDR_AFFINITY));
        }
    }
    if m.memory.is_empty() {
        return Err(Error::NoMemory);
    }
    if m.model.contains('\0') {
        return Err(Error::NulInString("the model"));
    }
    if m.chosen.bootargs.contains('\0') {
        return Err(Error::NulInString("the kernel command line"));
    }
    check_regions(m)?;
    let needed = m.cpus.len() as u64 * REDIST_PER_CPU;
    if m.gic.redistributors.size < needed {
        return Err(Error::RedistributorsTooSmall {
            cpus: m.cpus.len(),
            size: m.gic.redistributors.size,
            per_cpu: REDIST_PER_CPU,
            needed,
        });
    }
    check_interrupts(m)?;
    if m.uart.clock_hz == 0 {
        return Err(Error::NoUartClock);
    }
    if let Some(initrd) = m.chosen.initrd {
        let inside = initrd.end().is_some_and(|end| {
            initrd.size > 0
                && m.memory.iter().any(|r| r.base <= initrd.base && r.end().is_some_and(|e| end <= e))
        });
        if !inside {
            return Err(Error::InitrdOutsideRam { base: initrd.base, size: initrd.size });
        }
    }
    check_pci(m)?;
    check_iommu(m)
}
