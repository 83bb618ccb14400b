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
    regions.push(("the UART".into(), m.uart.region()));
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
    let mut spis: Vec<(u32, String)> = vec![(m.uart.spi(), "the UART".into())];
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
    if m.uart.clock_hz() == 0 {
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
    check_dma_pools(m)?;
    check_iommu(m)
}

/// Restricted DMA pools: inside RAM, page aligned, apart from each other and the initrd; every
/// index a device or bridge names exists; a function with its own node sits once on its
/// bridge's first bus (where Linux looks for it).
fn check_dma_pools(m: &Machine) -> Result<(), Error> {
    let mut taken: Vec<(String, MemoryRange)> = Vec::new();
    if let Some(initrd) = m.chosen.initrd {
        taken.push(("the initrd".into(), initrd));
    }
    for (index, pool) in m.dma_pools.iter().enumerate() {
        let inside = pool.size > 0
            && pool.end().is_some_and(|end| {
                m.memory.iter().any(|r| r.base <= pool.base && r.end().is_some_and(|e| end <= e))
            });
        if !inside {
            return Err(Error::DmaPoolOutsideRam { index, base: pool.base, size: pool.size });
        }
        if pool.base % 0x1000 != 0 {
            return Err(Error::DmaPoolAlignment { index, base: pool.base });
        }
        // Inside RAM, so the ends exist.
        if let Some((other, _)) =
            taken.iter().find(|(_, r)| r.base < pool.base + pool.size && pool.base < r.base + r.size)
        {
            return Err(Error::DmaPoolOverlap { index, range: range_text(pool), other: other.clone() });
        }
        taken.push((format!("restricted DMA pool {index}"), *pool));
    }
    let known = |i: usize| i < m.dma_pools.len();
    for d in &m.virtio_mmio {
        if let Some(i) = d.dma_pool.filter(|&i| !known(i)) {
            return Err(Error::NoSuchDmaPool(mmio_name(d.region.base), i));
        }
    }
    for root in &m.pci_roots {
        let mut seen = HashSet::new();
        for f in &root.functions {
            let name = pci_name(root.segment, f.bdf);
            if !known(f.dma_pool) {
                return Err(Error::NoSuchDmaPool(name, f.dma_pool));
            }
            if (f.bdf >> 8) as u8 != root.bus_start || !seen.insert(f.bdf) {
                return Err(Error::PciFunctionNode(name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{PciIommuRange, Uart};
    use crate::test_utils::{pci_segment, virt, virtio_mmio_device};

    /// Two CPUs, 1 GiB, two virtio-mmio devices, one bridge translated from endpoint 0, the
    /// virtio-iommu at 00:01.0: valid.
    fn machine() -> Machine {
        let mut m = virt(2, 1 << 30, "console=ttyAMA0");
        m.virtio_mmio = vec![
            virtio_mmio_device(0, true, Some(0x10_0000)).unwrap(),
            virtio_mmio_device(1, false, None).unwrap(),
        ];
        m.pci_roots = vec![pci_segment(0).unwrap().root(true, PciIommuScope::all_except(0, 15, 0, &[0x08]))];
        m.iommu = Some(VirtioIommu::Pci { segment: 0, bdf: 0x08 });
        m
    }

    fn err(m: &Machine) -> Error {
        validate(m).expect_err("validation should fail")
    }

    fn ranges(m: &mut Machine, list: &[(u16, u16, u32)]) {
        m.pci_roots[0].iommu = PciIommuScope::Ranges(
            list.iter()
                .map(|&(rid_start, rid_end, endpoint_start)| PciIommuRange {
                    rid_start,
                    rid_end,
                    endpoint_start,
                })
                .collect(),
        );
    }

    #[test]
    fn the_sample_is_valid() {
        validate(&machine()).unwrap();
        validate(&virt(1, 16 << 20, "")).unwrap();
    }

    #[test]
    fn cpus_and_memory() {
        let mut m = machine();
        m.cpus.clear();
        assert!(matches!(err(&m), Error::NoCpus));
        // Bit 31 (RES1 in MPIDR_EL1) is not affinity: these are the same CPU.
        m.cpus = vec![0x8000_0001, 1];
        assert!(matches!(err(&m), Error::DuplicateMpidr(1)));
        let mut m = machine();
        m.memory.clear();
        assert!(matches!(err(&m), Error::NoMemory));
        let mut m = machine();
        m.gic.redistributors.size = 0x2_0000;
        assert_eq!(
            err(&m).to_string(),
            "the GIC redistributor region (0x20000 bytes) is too small for 2 CPUs: each needs 0x20000 bytes, \
             0x40000 in all"
        );
    }

    #[test]
    fn regions_are_non_empty_and_disjoint() {
        let mut m = machine();
        m.virtio_mmio[1].region.size = 0;
        assert_eq!(err(&m).to_string(), "virtio-mmio device at 0xa001000 is empty (size 0)");
        let mut m = machine();
        m.memory.push(MemoryRange::new(u64::MAX - 0xfff, 0x2000));
        assert!(matches!(err(&m), Error::RegionWraps { .. }));
        let mut m = machine();
        m.virtio_mmio[1].region.base = 0x0900_0100;
        assert_eq!(
            err(&m).to_string(),
            "the UART (0x9000000..0x9001000) overlaps virtio-mmio device at 0x9000100 (0x9000100..0x9000300)"
        );
        let mut m = machine();
        m.memory[0].size = 0x80_0000_0000;
        assert!(matches!(err(&m), Error::Overlap { ref first, ref second, .. }
                if first == "RAM range 0" && second == "the 64-bit window of PCI segment 0"));
        let mut m = machine();
        m.pci_roots[0].ecam_base = 0x0800_0000 - (1 << 20);
        assert!(
            matches!(err(&m), Error::Overlap { ref second, .. } if second == "the ECAM of PCI segment 0")
        );
    }

    #[test]
    fn interrupts() {
        let mut m = machine();
        m.virtio_mmio[1].spi = 988;
        assert_eq!(
            err(&m).to_string(),
            "virtio-mmio device at 0xa001000 uses SPI 988, but GICv3 SPIs are numbered 0-987"
        );
        let mut m = machine();
        m.virtio_mmio[1].spi = m.uart.spi();
        assert_eq!(
            err(&m).to_string(),
            "SPI 1 is given to both the UART and virtio-mmio device at 0xa001000"
        );
        let mut m = machine();
        m.timer.virt = 16;
        assert!(matches!(err(&m), Error::PpiOutOfRange { what: "virtual", ppi: 16 }));
        let mut m = machine();
        match &mut m.uart {
            Uart::Pl011(u) => u.clock_hz = 0,
            Uart::Ns16550a(u) => u.clock_hz = 0,
        }
        assert!(matches!(err(&m), Error::NoUartClock));
    }

    #[test]
    fn chosen() {
        let mut m = machine();
        m.chosen.initrd = Some(MemoryRange::new(0x4000_0000 + (1 << 30) - 0x1000, 0x2000));
        assert!(matches!(err(&m), Error::InitrdOutsideRam { .. }));
        m.chosen.initrd = Some(MemoryRange::new(0x4000_0000, 0));
        assert!(matches!(err(&m), Error::InitrdOutsideRam { .. }));
        m.chosen.initrd = Some(MemoryRange::new(0x4000_0000, 0x1000));
        validate(&m).unwrap();
        m.chosen.bootargs = "a\0b".into();
        assert_eq!(err(&m).to_string(), "the kernel command line contains a NUL byte");
    }

    #[test]
    fn host_bridges() {
        let mut m = machine();
        m.pci_roots.push(pci_segment(1).unwrap().root(true, PciIommuScope::Bypass));
        m.pci_roots[1].segment = 0;
        assert!(matches!(err(&m), Error::DuplicatePciSegment(0)));
        let mut m = machine();
        m.pci_roots[0].bus_start = 3;
        m.pci_roots[0].bus_end = 2;
        assert!(matches!(err(&m), Error::PciBusRange { segment: 0, start: 3, end: 2 }));
        let mut m = machine();
        m.pci_roots[0].ecam_base += 0x1000;
        assert!(matches!(err(&m), Error::PciEcamAlignment { .. }));
        let mut m = machine();
        m.pci_roots[0].mem32 = MemoryRange::new(0xf000_0000, 0x2000_0000);
        assert!(matches!(err(&m), Error::PciMem32Above4G { .. }));
        let mut m = machine();
        m.pci_roots[0].io = Some(MemoryRange::new(0x0f00_0000, 0x2_0000));
        assert!(matches!(err(&m), Error::PciIoTooLarge { size: 0x2_0000, .. }));
        let mut m = machine();
        m.gic.its = None;
        assert!(matches!(err(&m), Error::NoIts));
        let mut m = machine();
        m.pci_roots[0].its_device_base = u32::MAX - 0xff;
        assert!(matches!(err(&m), Error::ItsDeviceIdOverflow { .. }));
        let mut m = machine();
        let mut second = pci_segment(1).unwrap().root(true, PciIommuScope::Bypass);
        second.its_device_base = 0xfff;
        m.pci_roots.push(second);
        assert_eq!(err(&m).to_string(), "PCI segments 0 and 1 share ITS DeviceIDs");
    }

    #[test]
    fn iommu_map_ranges() {
        let mut m = machine();
        ranges(&mut m, &[(0x10, 0xf, 0)]);
        assert!(matches!(err(&m), Error::IommuRangeEmpty { .. }));
        ranges(&mut m, &[(0x10, 0x1000, 0x10)]);
        assert_eq!(
            err(&m).to_string(),
            "PCI segment 0: IOMMU range of requester IDs 0x0010..=0x1000 is not within the bridge's buses 0x0..=0xf"
        );
        ranges(&mut m, &[(0x10, 0x1f, 0x10), (0x18, 0x20, 0x18)]);
        assert!(matches!(
            err(&m),
            Error::IommuRangesOverlap { first: (0x10, 0x1f), second: (0x18, 0x20), .. }
        ));
        ranges(&mut m, &[(0x10, 0x1f, u32::MAX - 3)]);
        assert!(matches!(err(&m), Error::EndpointIdOverflow(_)));
        // Two ranges of one bridge on the same endpoint IDs.
        ranges(&mut m, &[(0x10, 0x1f, 0x10), (0x20, 0x2f, 0x18)]);
        assert_eq!(
            err(&m).to_string(),
            "endpoint ID 0x18 is given to both requester IDs 0000:00:02.0..=0000:00:03.7 and requester IDs \
             0000:00:04.0..=0000:00:05.7"
        );
        // A PCI range and a virtio-mmio device.
        ranges(&mut m, &[(0x10, 0x1f, 0x10_0000 - 4)]);
        assert!(matches!(err(&m), Error::EndpointIdReused { id: 0x10_0000, .. }));
        // Two bridges on the same endpoint IDs.
        let mut m = machine();
        m.pci_roots.push(pci_segment(1).unwrap().root(true, PciIommuScope::all_except(0, 15, 0xf00, &[])));
        assert!(matches!(err(&m), Error::EndpointIdReused { id: 0xf00, .. }));
    }

    #[test]
    fn the_iommu_exists_and_is_never_in_its_own_scope() {
        let mut m = machine();
        ranges(&mut m, &[(0, 0xfff, 0)]);
        assert_eq!(
            err(&m).to_string(),
            "the virtio-iommu (0000:00:01.0) is in its own scope: the IOMMU is never in its own scope"
        );
        let mut m = machine();
        m.iommu = Some(VirtioIommu::Mmio { base: m.virtio_mmio[0].region.base });
        assert!(matches!(err(&m), Error::IommuInOwnScope(_)), "the mmio IOMMU with iommus");
        m.iommu = Some(VirtioIommu::Mmio { base: m.virtio_mmio[1].region.base });
        validate(&m).unwrap();
        m.iommu = Some(VirtioIommu::Mmio { base: 0x0a00_0100 });
        assert!(matches!(err(&m), Error::IommuNotMmioDevice(0x0a00_0100)));
        let mut m = machine();
        m.iommu = Some(VirtioIommu::Pci { segment: 0, bdf: 0x108 });
        assert_eq!(
            err(&m).to_string(),
            "the virtio-iommu 0000:01:01.0 is not on the root bus of any PCI host bridge of the machine"
        );
        m.iommu = Some(VirtioIommu::Pci { segment: 1, bdf: 0x08 });
        assert!(matches!(err(&m), Error::IommuNotOnRootBus(_)));
        // Translated devices need an IOMMU to point at.
        let mut m = machine();
        m.iommu = None;
        m.pci_roots[0].iommu = PciIommuScope::Bypass;
        assert_eq!(
            err(&m).to_string(),
            "virtio-mmio device at 0xa000000 is translated by the virtio-iommu, but the machine has none"
        );
        m.virtio_mmio[0].iommu_endpoint = None;
        validate(&m).unwrap();
        ranges(&mut m, &[(0x10, 0x17, 0x10)]);
        assert!(matches!(err(&m), Error::NoIommu(_)));
        ranges(&mut m, &[]);
        validate(&m).unwrap();
    }
}
