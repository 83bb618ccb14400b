//! `--stats`: what the virtual IOMMU did for each endpoint, printed when
//! the VM stops (the same on every architecture).

use crate::vtd_units::VtdUnits;

/// `--stats`: one line per IOMMU endpoint on stderr, named by device.
pub fn print_iommu_stats(
    machine: &dmavm_machine::Machine,
    iommu: Option<&dmavm_iommu::IommuHandle>,
    vtd: &VtdUnits,
) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let device_of = |endpoint: u32| {
        machine.devices.iter().find(|d| d.dma.endpoint() == Some(endpoint)).map_or("?", |d| d.id.as_str())
    };
    if !vtd.is_empty() {
        for (unit, endpoint, stats) in vtd.stats() {
            let _ = writeln!(err, "dmavm: stats: {}: {unit} {stats}", device_of(endpoint));
        }
        return;
    }
    let Some(iommu) = iommu else {
        let _ = writeln!(err, "dmavm: stats: no IOMMU (every device reaches guest memory directly)");
        return;
    };
    for stats in iommu.stats() {
        let _ = writeln!(err, "dmavm: stats: {}: {stats}", device_of(stats.endpoint));
    }
    let dropped = iommu.faults_dropped();
    if dropped > 0 {
        let _ = writeln!(
            err,
            "dmavm: stats: {dropped} fault reports dropped (the guest posted no event buffers)"
        );
    }
}
