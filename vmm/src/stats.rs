//! `--stats`: what the virtual IOMMU did for each endpoint, printed when
//! the VM stops (the same on every architecture).

/// `--stats`: one line per IOMMU endpoint on stderr, named by device.
pub fn print_iommu_stats(machine: &dmavm_machine::Machine, iommu: Option<&dmavm_iommu::IommuHandle>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let Some(iommu) = iommu else {
        let _ = writeln!(err, "dmavm: stats: no IOMMU (every device reaches guest memory directly)");
        return;
    };
    for stats in iommu.stats() {
        let id = machine
            .devices
            .iter()
            .find(|d| d.dma.endpoint() == Some(stats.endpoint))
            .map_or("?", |d| d.id.as_str());
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

/// `--stats`: one line per network device on stderr.
pub fn print_net_stats(net: &[(String, crate::virtio_devices::NetCountersFn)]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for (id, counters) in net {
        let c = counters();
        let _ = writeln!(
            err,
            "dmavm: stats: {id}: rx {} frames {} bytes {} dropped {} stalls (no receive buffers); tx {} frames {} bytes {} dropped; {} backend errors",
            c.rx_frames, c.rx_bytes, c.rx_dropped, c.rx_stalls, c.tx_frames, c.tx_bytes, c.tx_dropped, c.backend_errors
        );
    }
}
