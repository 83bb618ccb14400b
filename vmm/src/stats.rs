//! `--stats`: what the virtual IOMMU did for each endpoint, and what each
//! device confined to a restricted DMA pool did, printed when the VM stops
//! (the same on every architecture); the virtio-iommu's counters are also
//! read live by the control socket's `stats`.

use dmavm_devices::virtio::PoolCounters;
use dmavm_iommu::{EndpointStats, IommuHandle};
use dmavm_machine::Machine;

use crate::vtd_units::VtdUnits;

/// The counters of each endpoint a device of `machine` has, with the
/// device's name.
pub fn by_device<'m>(machine: &'m Machine, iommu: &IommuHandle) -> Vec<(&'m str, EndpointStats)> {
    // The endpoints of empty hot-plug slots hold no device: not listed.
    iommu
        .stats()
        .into_iter()
        .filter_map(|stats| {
            let device = machine.devices.iter().find(|d| d.dma.endpoint() == Some(stats.endpoint))?;
            Some((device.id.as_str(), stats))
        })
        .collect()
}

/// `--stats`: one line per IOMMU endpoint on stderr, named by device.
pub fn print_iommu_stats(machine: &Machine, iommu: Option<&IommuHandle>, vtd: &VtdUnits) {
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
        let _ = writeln!(err, "dmavm: stats: no IOMMU (no device is translated)");
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

/// `--stats`: one line per device confined to a restricted DMA pool on
/// stderr: its accesses inside the pool and those refused outside it.
pub fn print_pool_stats(machine: &dmavm_machine::Machine, pools: &[(String, std::sync::Arc<PoolCounters>)]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for (id, counters) in pools {
        let pool = machine.devices.iter().find(|d| &d.id == id).and_then(|d| d.dma.pool());
        let range = pool.map_or_else(String::new, |(base, size)| format!(" {base:#x}..{:#x}", base + size));
        let _ = writeln!(
            err,
            "dmavm: stats: {id}: dma-pool{range}: accesses inside={} refused-outside={}",
            counters.inside(),
            counters.refused()
        );
    }
}

/// `--stats`: one line per network device on stderr.
pub fn print_net_stats(net: &[(String, crate::virtio_devices::NetCountersFn)]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for (id, counters) in net {
        let c = counters();
        let _ = writeln!(
            err,
            "dmavm: stats: {id}: rx {} frames {} bytes {} dropped {} stalls (no receive buffers); tx {} frames {} bytes {} dropped; {} backend errors; {} transmit notifications",
            c.rx_frames, c.rx_bytes, c.rx_dropped, c.rx_stalls, c.tx_frames, c.tx_bytes, c.tx_dropped, c.backend_errors,
            c.tx_notifications
        );
    }
}
