//! `--stats`: what the virtual IOMMU did for each endpoint, printed when
//! the VM stops (the same on every architecture), and read live by the
//! control socket's `stats`.

use dmavm_iommu::{EndpointStats, IommuHandle};
use dmavm_machine::Machine;

/// Each endpoint's counters with the name of the device behind it (`?`
/// for an endpoint no device of `machine` has).
pub fn by_device<'m>(machine: &'m Machine, iommu: &IommuHandle) -> Vec<(&'m str, EndpointStats)> {
    iommu
        .stats()
        .into_iter()
        .map(|stats| {
            let id = machine
                .devices
                .iter()
                .find(|d| d.dma.endpoint() == Some(stats.endpoint))
                .map_or("?", |d| d.id.as_str());
            (id, stats)
        })
        .collect()
}

/// `--stats`: one line per IOMMU endpoint on stderr, named by device.
pub fn print_iommu_stats(machine: &Machine, iommu: Option<&IommuHandle>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let Some(iommu) = iommu else {
        let _ = writeln!(err, "dmavm: stats: no IOMMU (every device reaches guest memory directly)");
        return;
    };
    for (id, stats) in by_device(machine, iommu) {
        let _ = writeln!(err, "dmavm: stats: {id}: {stats}");
    }
    let dropped = iommu.faults_dropped();
    if dropped > 0 {
        let _ = writeln!(
            err,
            "dmavm: stats: {dropped} fault reports dropped (the guest posted no event buffers)"
        );
    }
}
