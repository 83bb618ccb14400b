//! Judging one run: what the guest saw ([`Observed`]) against what the
//! machine model says it should see ([`Expectations`]), check by check in
//! a fixed order, so that a failing run names its first failing check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::expect::{Expectations, ExpectedVtd, Kind, Location, NetLink};
use super::net_peer::PeerSeen;
use super::observe::{Observed, SeenNet, SeenVirtio};

/// `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.2, 6).
const F_ACCESS_PLATFORM: usize = 33;
/// Bytes the check reads from every hwrng.
pub const RNG_BYTES: u64 = 65536;

/// The checks, in the order [`judge`] judges them (a test holds `judge`
/// to this list).
pub const CHECKS: &[&str] =
    &["boot", "finished", "devices", "iommu-groups", "access-platform", "dma", "kernel-log", "vmm-stats"];
/// The check arm64 runs after `dma` (x86 DMA is always coherent).
pub const COHERENCY: &str = "coherency";
/// The check a machine with network devices runs after `dma` (and
/// `coherency`).
pub const NET: &str = "net";

/// The checks of a run on `arch` (`x86_64`, `aarch64`), with the `net`
/// check or not, in order.
pub fn checks_of(arch: &str, net: bool) -> Vec<&'static str> {
    let mut all = CHECKS.to_vec();
    let mut at = 6;
    if arch == "aarch64" {
        all.insert(at, COHERENCY);
        at += 1;
    }
    if net {
        all.insert(at, NET);
    }
    all
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// A check failed.
    Failed,
    /// Killed at its timeout.
    Timeout,
    /// The harness could not run it.
    Error,
}

impl Outcome {
    /// For tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Error => "ERROR",
        }
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A check [`judge`] runs (`boot`, `finished`, ... `vmm-stats`), or
    /// `harness` for a run the harness could not start.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen, or why it failed.
    pub detail: String,
}

impl Check {
    fn new(name: &str, failures: Vec<String>, ok: impl Into<String>) -> Self {
        let passed = failures.is_empty();
        let detail = if passed { ok.into() } else { failures.join("; ") };
        Self { name: name.into(), passed, detail }
    }
}

/// How the VM process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `dmavm run`'s exit status.
    Status(i32),
    /// Killed at the timeout.
    TimedOut(Duration),
}

/// A disk image as the host saw it before and after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDisk {
    /// The device id (the guest's serial).
    pub id: String,
    /// SHA-256 of the whole image before the run.
    pub before: String,
    /// SHA-256 of the whole image after the run.
    pub after: String,
    /// SHA-256 of its first MiB after the run.
    pub after_first_mib: String,
}

fn exit_text(status: i32) -> String {
    match status {
        0 => "powered off".into(),
        3 => "reset (exit status 3)".into(),
        s if s > 128 => format!("killed by signal {} (exit status {s})", s - 128),
        s => format!("exit status {s}"),
    }
}

/// Judges a run. Checks after a failed `boot` or `finished` are not
/// judged (the guest's report is incomplete).
pub fn judge(
    exp: &Expectations,
    o: &Observed,
    exit: Exit,
    host: &[HostDisk],
    pattern_sha: &str,
    peers: &[PeerSeen],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let why_stopped = || -> String {
        let mut s = match exit {
            Exit::TimedOut(t) => format!("killed at its {}s timeout", t.as_secs_f64().round()),
            Exit::Status(st) => format!("the VM stopped: {}", exit_text(st)),
        };
        if let Some(e) = o.vmm_errors.first() {
            s.push_str(&format!("; dmavm: {e}"));
        }
        if let Some(p) = &o.panic {
            s.push_str(&format!("; {p}"));
        } else if let Some(k) = o.klog.first() {
            s.push_str(&format!("; {k}"));
        }
        s
    };

    // boot
    if !o.init {
        checks.push(Check::new(
            "boot",
            vec![format!("the kernel never reached init ({})", why_stopped())],
            "",
        ));
        return checks;
    }
    checks.push(Check::new(
        "boot",
        vec![],
        format!("init reached, kernel {}", o.kernel.as_deref().unwrap_or("?")),
    ));

    // finished
    let clean = exit == Exit::Status(0) && o.done && o.check_status == Some(0);
    if !clean {
        let mut why = match (o.done, o.check_status) {
            (false, _) => "the guest's check did not reach its end".to_string(),
            (true, Some(s)) if s != 0 => format!("the guest's check failed with status {s}"),
            (true, _) => "the guest did not end the VM after its check".to_string(),
        };
        why.push_str(&format!(" ({}", why_stopped()));
        if let (false, Some(l)) = (o.done, &o.last_line) {
            why.push_str(&format!("; last line: {l}"));
        }
        why.push(')');
        checks.push(Check::new("finished", vec![why], ""));
        return checks;
    }
    checks.push(Check::new("finished", vec![], "the check ran to its end and the guest powered off"));

    // devices: each where the model puts it, with a driver
    let absent = missing_drivers(exp, o);
    let find = |loc: &Location| -> Option<&SeenVirtio> {
        o.virtio.iter().find(|v| match loc {
            Location::Pci(bdf) => &v.parent == bdf,
            Location::Mmio(base) => v.addr == Some(*base),
        })
    };
    let mut missing = Vec::new();
    if !absent.is_empty() {
        missing.push(format!("the kernel has no {} driver (neither built in nor loaded)", absent.join(", ")));
    }
    let mut matched: Vec<&str> = Vec::new();
    for d in &exp.devices {
        match find(&d.location) {
            None => missing.push(format!("{} ({} at {}) did not appear", d.id, d.kind.name(), d.location)),
            Some(v) if v.device != d.kind.virtio_id() => missing.push(format!(
                "{} ({} at {}): the guest found virtio device {:#x} there",
                d.id,
                d.kind.name(),
                d.location,
                v.device
            )),
            Some(v) => {
                matched.push(&v.name);
                if v.driver.is_none() {
                    missing.push(format!(
                        "{} ({} at {}, {}) has no driver",
                        d.id,
                        d.kind.name(),
                        d.location,
                        v.name
                    ));
                }
            }
        }
    }
    for v in o.virtio.iter().filter(|v| !matched.contains(&v.name.as_str())) {
        missing.push(format!("unexpected virtio device {:#x} at {}", v.device, v.parent));
    }
    for d in exp.devices.iter().filter(|d| matches!(d.kind, Kind::Disk { .. })) {
        if matched.len() == exp.devices.len() && !o.disks.iter().any(|s| s.serial == d.id) {
            missing.push(format!("no block device has serial {}", d.id));
        }
    }
    let rngs = exp.count(|k| k == Kind::Rng);
    if o.rngs.len() != rngs {
        missing.push(format!("{} virtio hwrng(s), expected {rngs}", o.rngs.len()));
    }
    let consoles = exp.count(|k| k == Kind::Console);
    if o.consoles.len() != consoles {
        missing.push(format!("{} virtio console(s), expected {consoles}", o.consoles.len()));
    }
    if !missing.is_empty() && !o.insmod_failed.is_empty() {
        missing.push(format!("modules that did not load: {}", o.insmod_failed.join(", ")));
    }
    checks.push(Check::new(
        "devices",
        missing,
        format!("{} virtio devices where the model puts them", exp.devices.len()),
    ));

    // iommu-groups and access-platform
    let mut groups = Vec::new();
    let mut platform = Vec::new();
    for d in &exp.devices {
        let Some(v) = find(&d.location).filter(|v| v.device == d.kind.virtio_id()) else { continue };
        match (d.translated, &v.group) {
            (true, None) => {
                groups.push(format!("{} ({}) is translated but in no IOMMU group", d.id, d.location))
            }
            (false, Some(g)) => {
                groups.push(format!("{} ({}) bypasses the IOMMU but is in group {g}", d.id, d.location))
            }
            _ => {}
        }
        if v.feature(F_ACCESS_PLATFORM) != d.access_platform {
            platform.push(format!(
                "{} ({}): ACCESS_PLATFORM {}negotiated, the model {}",
                d.id,
                d.location,
                if v.feature(F_ACCESS_PLATFORM) { "" } else { "not " },
                if d.access_platform { "offers it" } else { "does not offer it" }
            ));
        }
    }
    let translated = exp.devices.iter().filter(|d| d.translated).count();
    let mut groups_ok =
        format!("{translated} translated in groups, {} outside", exp.devices.len() - translated);
    if let Some(vtd) = &exp.vtd {
        // The units explain the groups: without them nothing is in one.
        groups.splice(0..0, vtd_units(vtd, o));
        groups_ok.push_str(&format!("; {} VT-d unit(s), DMAR {}", vtd.units, vtd.dmar));
    }
    checks.push(Check::new("iommu-groups", groups, groups_ok));
    checks.push(Check::new("access-platform", platform, "negotiated exactly where offered"));

    // dma
    let mut dma = Vec::new();
    for d in &exp.devices {
        let Kind::Disk { readonly } = d.kind else { continue };
        let Some(seen) = o.disks.iter().find(|s| s.serial == d.id) else { continue };
        let Some(h) = host.iter().find(|h| h.id == d.id) else { continue };
        if seen.sha != h.before {
            dma.push(format!("{}: the guest read other data than the image holds", d.id));
        }
        if readonly {
            if seen.write_refused != Some(true) {
                dma.push(format!("{}: read-only, but a write was not refused", d.id));
            }
            if h.after != h.before {
                dma.push(format!("{}: read-only, but its image changed", d.id));
            }
        } else {
            if seen.readback.as_deref() != Some(pattern_sha) {
                dma.push(format!("{}: what the guest wrote did not read back (O_DIRECT)", d.id));
            }
            if h.after_first_mib != pattern_sha {
                dma.push(format!("{}: what the guest wrote did not reach the image", d.id));
            }
        }
    }
    for (name, bytes) in &o.rngs {
        if *bytes != RNG_BYTES {
            dma.push(format!("{name}: read {bytes} of {RNG_BYTES} bytes"));
        }
    }
    for c in &o.consoles {
        if !o.console_lines.contains(c) {
            dma.push(format!("{c}: the line written to it never reached the host"));
        }
    }
    checks.push(Check::new("dma", dma, "disks read, written and read back; RNGs read; consoles written"));

    if exp.coherency {
        checks.push(coherency(exp, o));
    }
    if !exp.nets.is_empty() {
        checks.push(net(&exp.nets, &o.nets, peers));
    }

    // kernel-log
    let klog = match o.klog_bad {
        Some(0) => vec![],
        Some(n) => vec![format!("{n} line(s) match, first: {}", o.klog.first().map_or("?", String::as_str))],
        None => vec!["the guest did not scan its kernel log (no patterns in the initramfs)".into()],
    };
    checks.push(Check::new("kernel-log", klog, "no line matches a fail pattern"));

    // vmm-stats
    let mut stats = Vec::new();
    for (id, c) in &o.stats {
        if c.faults > 0 {
            stats.push(format!("{id}: {} IOMMU fault(s)", c.faults));
        }
        if c.refused_attach > 0 && !exp.refused_attach_allowed {
            stats.push(format!("{id}: {} refused ATTACH", c.refused_attach));
        }
        if c.untranslated > 0 {
            stats.push(format!(
                "{id}: {} DMA access(es) passed untranslated (VT-d translation was off)",
                c.untranslated
            ));
        }
    }
    if o.dropped_faults > 0 {
        stats.push(format!("{} fault reports dropped", o.dropped_faults));
    }
    for d in exp.devices.iter().filter(|d| d.translated) {
        if !o.stats.iter().any(|(id, _)| id == &d.id) {
            stats.push(format!("{}: translated, but dmavm has no counters for it", d.id));
        }
    }
    checks.push(Check::new("vmm-stats", stats, format!("{} endpoints, no faults", o.stats.len())));
    checks
}

/// The first 16 hex digits of a SHA-256, for messages.
fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}

/// `net`: on every link the guest found its interface, saw the link up,
/// got an answer to its ping, received the peer's block intact and sent it
/// back intact, each judged on both ends' checksums.
fn net(links: &[NetLink], seen: &[SeenNet], peers: &[PeerSeen]) -> Check {
    let mut wrong = Vec::new();
    let mut timings = Vec::new();
    for link in links {
        let who = format!("{} ({})", link.id, link.mac);
        let Some(g) = seen.iter().find(|n| n.mac == link.mac) else {
            wrong.push(format!("{who}: the guest's check never got to it"));
            continue;
        };
        let Some(iface) = &g.iface else {
            wrong.push(format!("{who}: the guest has no interface with that MAC"));
            continue;
        };
        let who = format!("{} ({iface})", link.id);
        let mut failed = Vec::new();
        if g.carrier != Some(true) {
            failed.push("link down (carrier 0 once brought up)".to_string());
        }
        if g.ping != Some(true) {
            failed.push(format!("ping to the peer {} failed", link.host));
        }
        let peer = peers.iter().find(|p| p.id == link.id);
        match peer {
            None => failed.push("the harness's peer reported nothing".into()),
            Some(p) => {
                if let Some(e) = &p.error {
                    failed.push(format!("peer: {e}"));
                }
                match (&g.down_sha, g.down_bytes) {
                    (None, _) => failed.push(format!(
                        "the download failed (http://{}:{}/data{})",
                        link.host,
                        super::net_peer::HTTP_PORT,
                        if p.served { "; the peer sent it all" } else { "; the peer never sent it all" }
                    )),
                    (Some(sha), bytes) if *sha != p.block_sha => failed.push(format!(
                        "checksum mismatch on the download: the guest received {} bytes with SHA-256 {}, the peer \
                         sent {} bytes with {}",
                        bytes.map_or("?".into(), |b| b.to_string()),
                        short(sha),
                        p.block_bytes,
                        short(&p.block_sha)
                    )),
                    _ => {}
                }
                match &p.received {
                    None => failed.push(format!(
                        "nothing came back to the peer on port {} (the guest's nc {})",
                        super::net_peer::UPLOAD_PORT,
                        match g.up_ok {
                            Some(true) => "ended without an error",
                            Some(false) => "failed",
                            None => "never ran",
                        }
                    )),
                    Some((sha, bytes)) if *sha != p.block_sha => failed.push(format!(
                        "checksum mismatch on the upload: the peer received {bytes} bytes with SHA-256 {}, the \
                         block is {} bytes with {}",
                        short(sha),
                        p.block_bytes,
                        short(&p.block_sha)
                    )),
                    _ => {}
                }
            }
        }
        if failed.is_empty() {
            let secs = |t: Option<f64>| t.map_or("?".into(), |t| format!("{t:.1}s"));
            timings.push(format!("{who} down {}, up {}", secs(g.down_secs), secs(g.up_secs)));
        } else {
            wrong.push(format!("{who}: {}", failed.join(", ")));
        }
    }
    let block = peers.first().map_or(0, |p| p.block_bytes);
    let ok = format!(
        "{} link(s) up, ping answered, {} KiB down and back up with matching SHA-256 ({})",
        links.len(),
        block >> 10,
        timings.join("; ")
    );
    Check::new(NET, wrong, ok)
}

/// VT-d: the guest's kernel registered every unit of the machine and read
/// the DMAR the model declares (a DRHD per unit, scopes exactly the
/// translated functions).
fn vtd_units(vtd: &ExpectedVtd, o: &Observed) -> Vec<String> {
    let mut wrong = Vec::new();
    match o.dmar_units {
        None => wrong.push("the guest did not report its VT-d units".to_string()),
        Some(0) if vtd.units > 0 => wrong.push(format!(
            "the kernel registered none of the {} VT-d unit(s) (it needs CONFIG_INTEL_IOMMU and, unless \
             CONFIG_INTEL_IOMMU_DEFAULT_ON, intel_iommu=on on its command line)",
            vtd.units
        )),
        Some(n) if n != vtd.units => {
            wrong.push(format!("the kernel registered {n} VT-d unit(s), the machine has {}", vtd.units))
        }
        Some(_) => {}
    }
    match o.dmar.as_deref() {
        Some(seen) if seen == vtd.dmar => {}
        seen => wrong.push(format!(
            "the guest read DMAR {}, the machine declares {}",
            seen.unwrap_or("(not reported)"),
            vtd.dmar
        )),
    }
    wrong
}

/// arm64: each disk's cache maintenance as its coherency demands. A
/// non-coherent device needs the caches cleaned before and invalidated
/// after its DMA (arch_sync_dma_for_device/for_cpu) and its coherent
/// allocations mapped non-cacheable; a coherent one gets neither. Either
/// mismatch means the guest was told another coherency than the device
/// has (the device tree's `dma-coherent`, a bridge's, or the IOMMU's).
fn coherency(exp: &Expectations, o: &Observed) -> Check {
    let mut wrong = Vec::new();
    if let Some(why) = &o.coherency_error {
        wrong.push(format!("the guest could not measure its DMA set-up ({why})"));
    }
    let mut measured = 0;
    for d in exp.devices.iter().filter(|d| matches!(d.kind, Kind::Disk { .. })) {
        let Some(seen) = o.coherency.iter().find(|c| c.serial == d.id) else {
            if o.coherency_error.is_none() {
                wrong.push(format!("{} ({}): not measured", d.id, d.location));
            }
            continue;
        };
        measured += 1;
        let (syncs, nc) = (seen.sync_for_device + seen.sync_for_cpu, seen.non_cacheable());
        let what = format!(
            "{} cache syncs for the device, {} for the CPU, coherent memory {}",
            seen.sync_for_device, seen.sync_for_cpu, seen.prot
        );
        if d.coherent && (syncs > 0 || nc) {
            wrong.push(format!(
                "{} ({}) is coherent, but the guest treats it as non-coherent ({what})",
                d.id, d.location
            ));
        } else if !d.coherent && (seen.sync_for_device == 0 || seen.sync_for_cpu == 0 || !nc) {
            wrong.push(format!(
                "{} ({}) is not coherent, but the guest treats it as coherent ({what})",
                d.id, d.location
            ));
        }
    }
    Check::new(
        COHERENCY,
        wrong,
        format!("{measured} disk(s): cache maintenance exactly for the non-coherent ones"),
    )
}

/// The drivers the machine's devices need that the guest's kernel has
/// neither built in nor loaded (none when the guest did not say).
pub fn missing_drivers(exp: &Expectations, o: &Observed) -> Vec<String> {
    let Some(have) = &o.drivers else { return Vec::new() };
    exp.drivers().into_iter().filter(|d| !have.iter().any(|h| h == d)).map(str::to_string).collect()
}

/// The outcome of a run with these checks.
pub fn outcome(checks: &[Check], exit: Exit) -> Outcome {
    if matches!(exit, Exit::TimedOut(_)) {
        Outcome::Timeout
    } else if checks.iter().all(|c| c.passed) {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmavm_machine::options::{parse_disk, parse_iommu, parse_rng};
    use dmavm_machine::test_utils::new_machine;

    const PAT: &str = "pattern-sha";

    fn machine() -> Expectations {
        // iommu0 00:01.0; rand 00:02.0 translated; ro mmio 0xd0000000 bypassing; rng0 mmio 0xd0001000
        let disks = [
            parse_disk("path=a,transport=pci,id=rand").unwrap(),
            parse_disk("path=b,readonly=on,direct-ram-access=on,id=ro").unwrap(),
        ];
        let m = new_machine(&[], &disks, &[parse_rng("").unwrap()], None, Some(&parse_iommu("").unwrap()))
            .unwrap();
        Expectations::of(&m)
    }

    fn features(ap: bool) -> String {
        let mut f = "0".repeat(64);
        if ap {
            f.replace_range(33..34, "1");
        }
        f
    }

    fn good_output() -> String {
        format!(
            "DMAVM init uptime=1 kernel=6.12\n\
             DMAVM bt_drivers=virtio_blk,virtio_iommu,virtio_rng,virtio-pci,virtio-mmio\n\
             DMAVM bt_virtio=virtio0 device=0x0017 parent=0000:00:01.0 addr=- group=none driver=virtio_iommu features={}\n\
             DMAVM bt_virtio=virtio1 device=0x0002 parent=0000:00:02.0 addr=- group=0 driver=virtio_blk features={}\n\
             DMAVM bt_virtio=virtio2 device=0x0002 parent=LNRO0005:00 addr=d0000000 group=none driver=virtio_blk features={}\n\
             DMAVM bt_virtio=virtio3 device=0x0004 parent=LNRO0005:01 addr=d0001000 group=1 driver=virtio_rng features={}\n\
             DMAVM bt_disk=rand dev=vda ro=0 sha=r1 readback={PAT} write_refused=-\n\
             DMAVM bt_disk=ro dev=vdb ro=1 sha=o1 readback=- write_refused=1\n\
             DMAVM bt_rng=virtio_rng.0 bytes=65536\n\
             DMAVM bt_klog_bad=0\nDMAVM bt_done=1\nDMAVM check=boot-test status=0\n\
             dmavm: stats: rand: endpoint 0x10: domain 1, 5 map, 5 unmap, 9 translations, 0 IOTLB misses, 0 faults, 0 refused attach\n\
             dmavm: stats: rng0: endpoint 0x10001: domain 2, 5 map, 5 unmap, 9 translations, 0 IOTLB misses, 0 faults, 0 refused attach\n",
            features(false),
            features(true),
            features(false),
            features(true)
        )
    }

    fn host() -> Vec<HostDisk> {
        vec![
            HostDisk {
                id: "rand".into(),
                before: "r1".into(),
                after: "r2".into(),
                after_first_mib: PAT.into(),
            },
            HostDisk {
                id: "ro".into(),
                before: "o1".into(),
                after: "o1".into(),
                after_first_mib: "x".into(),
            },
        ]
    }

    fn first_failure(output: &str, exit: Exit) -> Option<(String, String)> {
        let checks = judge(&machine(), &Observed::parse(output), exit, &host(), PAT, &[]);
        checks.into_iter().find(|c| !c.passed).map(|c| (c.name, c.detail))
    }

    #[test]
    fn a_good_run_passes_every_check() {
        let checks = judge(&machine(), &Observed::parse(&good_output()), Exit::Status(0), &host(), PAT, &[]);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, CHECKS);
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        assert_eq!(outcome(&checks, Exit::Status(0)), Outcome::Passed);
    }

    #[test]
    fn coherency_needs_cache_maintenance_exactly_for_non_coherent_disks() {
        use crate::expect::{ExpectedDevice, Location};
        let disk = |id: &str, base: u64, coherent: bool| ExpectedDevice {
            id: id.into(),
            kind: Kind::Disk { readonly: false },
            location: Location::Mmio(base),
            translated: false,
            access_platform: true,
            coherent,
        };
        let exp = Expectations {
            devices: vec![disk("nc", 0xa000000, false), disk("co", 0xa001000, true)],
            coherency: true,
            refused_attach_allowed: false,
            vtd: None,
            nets: vec![],
        };
        let check = |lines: &str| coherency(&exp, &Observed::parse(lines));
        let good = "DMAVM bt_coherency=nc sync_for_device=40 sync_for_cpu=20 prot=normal-nc\n\
                    DMAVM bt_coherency=co sync_for_device=0 sync_for_cpu=0 prot=none\n";
        let c = check(good);
        assert!(c.passed && c.name == COHERENCY, "{c:?}");
        assert_eq!(c.detail, "2 disk(s): cache maintenance exactly for the non-coherent ones");
        // The device tree said coherent for nc: no maintenance at all.
        let c = check(&good.replace(
            "sync_for_device=40 sync_for_cpu=20 prot=normal-nc",
            "sync_for_device=0 sync_for_cpu=0 prot=none",
        ));
        assert!(!c.passed);
        assert!(c.detail.starts_with("nc (virtio-mmio 0xa000000) is not coherent, but the guest treats it as coherent (0 cache syncs"), "{}", c.detail);
        // Maintenance but cacheable rings is as wrong.
        assert!(!check(&good.replace("prot=normal-nc", "prot=normal")).passed);
        // And the reverse: a coherent disk with cache maintenance.
        let c = check(&good.replace("co sync_for_device=0", "co sync_for_device=3"));
        assert!(
            c.detail
                .contains("co (virtio-mmio 0xa001000) is coherent, but the guest treats it as non-coherent"),
            "{}",
            c.detail
        );
        // Not measured, or no probes, fails too.
        assert!(check("DMAVM bt_coherency=nc sync_for_device=1 sync_for_cpu=1 prot=normal-nc\n")
            .detail
            .contains("co (virtio-mmio 0xa001000): not measured"));
        assert!(check("DMAVM bt_coherency_error=kprobes_unavailable\n").detail.contains("could not measure"));
        // x86 runs have no coherency check.
        assert_eq!(checks_of("x86_64", false), CHECKS);
        assert_eq!(checks_of("aarch64", false)[6], COHERENCY);
    }

    /// A machine with one translated virtio-net-pci device (`up`) and
    /// one bypassing (`direct`), as the model and `links` give them.
    fn net_machine() -> Expectations {
        let m = dmavm_machine::test_utils::machine_for(
            dmavm_machine::Arch::X86_64,
            &[
                "--iommu",
                "--net",
                "tap=x,transport=pci,id=up",
                "--net",
                "tap=y,transport=pci,id=direct,direct-ram-access=on,mac=02:00:00:00:00:07",
            ],
        );
        Expectations::of(&m)
    }

    fn peer(id: &str, received: Option<(&str, u64)>) -> PeerSeen {
        PeerSeen {
            id: id.into(),
            block_sha: "b10c".repeat(16),
            block_bytes: 2 << 20,
            served: true,
            received: received.map(|(s, n)| (s.to_string(), n)),
            error: None,
        }
    }

    fn exchange(mac: &str, host: &str, down: &str) -> String {
        format!(
            "DMAVM bt_net={mac} host={host} iface=eth0\n\
             DMAVM net_iface=eth0 net_mac={mac} net_driver=virtio_net\n\
             DMAVM net_carrier=1\nDMAVM ping=1\n\
             DMAVM down_sha={down} down_bytes=2097152 down_secs=1.5\n\
             DMAVM up_secs=2.5 up_ok=1\nDMAVM bt_net_end={mac} status=0\n"
        )
    }

    #[test]
    fn the_net_check_compares_both_ends_of_every_link() {
        let exp = net_machine();
        let macs: Vec<&str> = exp.nets.iter().map(|l| l.mac.as_str()).collect();
        assert_eq!(macs[1], "02:00:00:00:00:07");
        let block = "b10c".repeat(16);
        let good = format!(
            "{}{}",
            exchange(macs[0], "169.254.10.1", &block),
            exchange(macs[1], "169.254.11.1", &block)
        );
        let both = [peer("up", Some((&block, 2 << 20))), peer("direct", Some((&block, 2 << 20)))];
        let c = net(&exp.nets, &Observed::parse(&good).nets, &both);
        assert!(c.passed, "{c:?}");
        assert_eq!(
            c.detail,
            "2 link(s) up, ping answered, 2048 KiB down and back up with matching SHA-256 \
             (up (eth0) down 1.5s, up 2.5s; direct (eth0) down 1.5s, up 2.5s)"
        );
        let fails = |output: &str, peers: &[PeerSeen]| -> String {
            let c = net(&exp.nets, &Observed::parse(output).nets, peers);
            assert!(!c.passed && c.name == NET, "{c:?}");
            c.detail
        };
        // The block arrived altered: both directions are off.
        let bad = good.replacen(&format!("down_sha={block}"), "down_sha=0123456789abcdef0123", 1);
        let upload = [peer("up", Some(("fedcba9876543210ff", 2 << 20))), both[1].clone()];
        assert_eq!(
            fails(&bad, &upload),
            "up (eth0): checksum mismatch on the download: the guest received 2097152 bytes with SHA-256 \
             0123456789abcdef, the peer sent 2097152 bytes with b10cb10cb10cb10c, checksum mismatch on the \
             upload: the peer received 2097152 bytes with SHA-256 fedcba9876543210, the block is 2097152 bytes \
             with b10cb10cb10cb10c"
        );
        // No answer to the ping, no download, nothing back.
        let dead = good
            .replacen("ping=1", "ping=0", 1)
            .replacen(&format!("down_sha={block}"), "down_sha=-", 1)
            .replacen("up_ok=1", "up_ok=0", 1);
        let mut silent = both.clone();
        silent[0].served = false;
        silent[0].received = None;
        assert_eq!(
            fails(&dead, &silent),
            "up (eth0): ping to the peer 169.254.10.1 failed, the download failed \
             (http://169.254.10.1:8080/data; the peer never sent it all), nothing came back to the peer on \
             port 9000 (the guest's nc failed)"
        );
        // A link down, a MAC without an interface, a link never reached.
        assert!(fails(&good.replacen("net_carrier=1", "net_carrier=0", 1), &both)
            .contains("up (eth0): link down"));
        let no_iface = good.replacen("iface=eth0", "iface=none", 1);
        assert!(fails(&no_iface, &both)
            .starts_with(&format!("up ({}): the guest has no interface with that MAC", macs[0])));
        let only_first = exchange(macs[0], "169.254.10.1", &block);
        assert_eq!(
            fails(&only_first, &both),
            "direct (02:00:00:00:00:07): the guest's check never got to it"
        );
        // The peer's own trouble is named, and a peer that reported
        // nothing (its thread died) fails the link.
        let mut broke = both.clone();
        broke[1].error = Some("receiving the block back: connection reset".into());
        assert!(
            fails(&good, &broke).contains("direct (eth0): peer: receiving the block back: connection reset")
        );
        assert!(fails(&good, &both[..1]).contains("direct (eth0): the harness's peer reported nothing"));
    }

    #[test]
    fn the_net_check_runs_only_with_links_after_dma() {
        assert_eq!(
            checks_of("x86_64", true),
            [
                "boot",
                "finished",
                "devices",
                "iommu-groups",
                "access-platform",
                "dma",
                NET,
                "kernel-log",
                "vmm-stats"
            ]
        );
        assert_eq!(checks_of("aarch64", true)[6..8], [COHERENCY, NET]);
        // judge: the net check's place, and none on a machine without links.
        let names = |c: Vec<Check>| c.into_iter().map(|c| c.name).collect::<Vec<_>>();
        let exp = net_machine();
        let o = Observed::parse(
            "DMAVM init kernel=6.12\nDMAVM bt_done=1\nDMAVM check=boot-test status=0\nDMAVM bt_klog_bad=0\n",
        );
        assert_eq!(names(judge(&exp, &o, Exit::Status(0), &[], PAT, &[])), checks_of("x86_64", true));
        assert_eq!(names(judge(&machine(), &o, Exit::Status(0), &host(), PAT, &[])), CHECKS);
    }

    #[test]
    fn drivers_the_kernel_lacks_are_named() {
        let exp = machine();
        assert_eq!(exp.drivers(), ["virtio-pci", "virtio_iommu", "virtio_blk", "virtio-mmio", "virtio_rng"]);
        let seen = |line: &str| Observed::parse(line);
        assert!(missing_drivers(&exp, &seen(&good_output())).is_empty());
        // A guest that did not list its drivers lacks none that we know of.
        assert!(missing_drivers(&exp, &seen("")).is_empty());
        assert_eq!(
            missing_drivers(&exp, &seen("DMAVM bt_drivers=virtio_console,virtio-pci\n")),
            ["virtio_iommu", "virtio_blk", "virtio-mmio", "virtio_rng"]
        );
    }

    /// A VT-d machine: rand 00:01.0 translated, ro 00:02.0 bypassing,
    /// rng0 00:03.0 translated; one unit for segment 0.
    fn vtd_machine() -> Expectations {
        let disks = [
            parse_disk("path=a,transport=pci,id=rand").unwrap(),
            parse_disk("path=b,transport=pci,readonly=on,direct-ram-access=on,id=ro").unwrap(),
        ];
        let rng = [parse_rng("transport=pci").unwrap()];
        let m = new_machine(&[], &disks, &rng, None, Some(&parse_iommu("type=vtd").unwrap())).unwrap();
        Expectations::of(&m)
    }

    fn vtd_output() -> String {
        format!(
            "DMAVM init uptime=1 kernel=6.12\n\
             DMAVM bt_drivers=virtio_blk,virtio_rng,virtio-pci\n\
             DMAVM bt_virtio=virtio0 device=0x0002 parent=0000:00:01.0 addr=- group=0 driver=virtio_blk features={}\n\
             DMAVM bt_virtio=virtio1 device=0x0002 parent=0000:00:02.0 addr=- group=none driver=virtio_blk features={}\n\
             DMAVM bt_virtio=virtio2 device=0x0004 parent=0000:00:03.0 addr=- group=1 driver=virtio_rng features={}\n\
             DMAVM bt_disk=rand dev=vda ro=0 sha=r1 readback={PAT} write_refused=-\n\
             DMAVM bt_disk=ro dev=vdb ro=1 sha=o1 readback=- write_refused=1\n\
             DMAVM bt_rng=virtio_rng.0 bytes=65536\n\
             DMAVM bt_dmar_units=1 structures=0000[00:01.0,00:03.0]\n\
             DMAVM bt_klog_bad=0\nDMAVM bt_done=1\nDMAVM check=boot-test status=0\n\
             dmavm: stats: rand: dmar0 source-id 00:01.0: domain 1, 90 translations, 9 IOTLB misses, 1 context-cache misses, 4 invalidations, 0 faults, 0 untranslated (translation off)\n\
             dmavm: stats: rng0: dmar0 source-id 00:03.0: domain 2, 90 translations, 9 IOTLB misses, 1 context-cache misses, 4 invalidations, 0 faults, 0 untranslated (translation off)\n",
            features(true),
            features(false),
            features(true)
        )
    }

    #[test]
    fn a_vtd_machine_is_judged_by_its_units_dmar_and_counters() {
        let exp = vtd_machine();
        let judge_vtd =
            |output: &str| judge(&exp, &Observed::parse(output), Exit::Status(0), &host(), PAT, &[]);
        let checks = judge_vtd(&vtd_output());
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        assert_eq!(
            checks[3].detail,
            "2 translated in groups, 1 outside; 1 VT-d unit(s), DMAR 0000[00:01.0,00:03.0]"
        );
        let first_failure = |output: String| {
            judge_vtd(&output).into_iter().find(|c| !c.passed).map(|c| (c.name, c.detail)).unwrap_or_default()
        };
        // A kernel that left VT-d off: no unit, no group, DMA untranslated.
        let (name, detail) = first_failure(
            vtd_output()
                .replace("bt_dmar_units=1", "bt_dmar_units=0")
                .replace("group=0", "group=none")
                .replace("0 untranslated", "7 untranslated"),
        );
        assert_eq!(name, "iommu-groups");
        assert!(
            detail.starts_with("the kernel registered none of the 1 VT-d unit(s)")
                && detail.contains("intel_iommu=on"),
            "{detail}"
        );
        assert!(detail.contains("rand (0000:00:01.0) is translated but in no IOMMU group"), "{detail}");
        let (name, detail) =
            first_failure(vtd_output().replace("[00:01.0,00:03.0]", "[00:01.0,00:02.0,00:03.0]"));
        assert_eq!(name, "iommu-groups");
        assert_eq!(
            detail,
            "the guest read DMAR 0000[00:01.0,00:02.0,00:03.0], the machine declares 0000[00:01.0,00:03.0]"
        );
        let (name, detail) = first_failure(
            vtd_output().replace("DMAVM bt_dmar_units=1 structures=0000[00:01.0,00:03.0]\n", ""),
        );
        assert_eq!(name, "iommu-groups");
        assert!(detail.starts_with("the guest did not report its VT-d units"), "{detail}");
        let (name, detail) =
            first_failure(vtd_output().replacen("0 faults, 0 untranslated", "2 faults, 3 untranslated", 1));
        assert_eq!(name, "vmm-stats");
        assert_eq!(
            detail,
            "rand: 2 IOMMU fault(s); rand: 3 DMA access(es) passed untranslated (VT-d translation was off)"
        );
        let (name, detail) =
            first_failure(vtd_output().replace("dmavm: stats: rng0: dmar0", "dmavm: stats: rng0: dmarx"));
        assert_eq!(name, "vmm-stats");
        assert_eq!(detail, "rng0: translated, but dmavm has no counters for it");
        // A machine without VT-d does not look at VT-d units.
        assert_eq!(machine().vtd, None);
    }

    #[test]
    fn each_fault_is_reported_by_its_check() {
        let good = good_output();
        let cases: Vec<(String, Exit, &str, &str)> = vec![
            (
                "Kernel panic - not syncing: no init\n".into(),
                Exit::Status(3),
                "boot",
                "reset (exit status 3); Kernel panic",
            ),
            (String::new(), Exit::TimedOut(Duration::from_secs(60)), "boot", "killed at its 60s timeout"),
            (good.replace("DMAVM bt_done=1\n", ""), Exit::Status(0), "finished", "did not reach its end"),
            (good.replace("status=0", "status=1"), Exit::Status(1), "finished", "failed with status 1"),
            (good.clone(), Exit::TimedOut(Duration::from_secs(9)), "finished", "killed at its 9s timeout"),
            (
                good.replace("parent=0000:00:02.0", "parent=0000:00:05.0"),
                Exit::Status(0),
                "devices",
                "rand (virtio-blk at 0000:00:02.0) did not appear",
            ),
            (
                good.replace("driver=virtio_iommu", "driver=none"),
                Exit::Status(0),
                "devices",
                "iommu0 (virtio-iommu at 0000:00:01.0, virtio0) has no driver",
            ),
            (
                good.replace("virtio_blk,virtio_iommu,", "").replace("driver=virtio_blk", "driver=none"),
                Exit::Status(0),
                "devices",
                "the kernel has no virtio_iommu, virtio_blk driver (neither built in nor loaded)",
            ),
            (
                good.replace("DMAVM bt_rng=virtio_rng.0 bytes=65536\n", ""),
                Exit::Status(0),
                "devices",
                "0 virtio hwrng(s), expected 1",
            ),
            (
                good.replace("group=0", "group=none"),
                Exit::Status(0),
                "iommu-groups",
                "rand (0000:00:02.0) is translated but in no IOMMU group",
            ),
            (
                good.replace("addr=d0000000 group=none", "addr=d0000000 group=4"),
                Exit::Status(0),
                "iommu-groups",
                "ro (virtio-mmio 0xd0000000) bypasses the IOMMU but is in group 4",
            ),
            (
                good.replacen(&features(true), &features(false), 1),
                Exit::Status(0),
                "access-platform",
                "rand (0000:00:02.0): ACCESS_PLATFORM not negotiated, the model offers it",
            ),
            (good.replace("sha=r1", "sha=zz"), Exit::Status(0), "dma", "rand: the guest read other data"),
            (
                good.replace("readback=pattern-sha", "readback=-"),
                Exit::Status(0),
                "dma",
                "rand: what the guest wrote did not read back",
            ),
            (
                good.replace("write_refused=1", "write_refused=0"),
                Exit::Status(0),
                "dma",
                "ro: read-only, but a write was not refused",
            ),
            (
                good.replace("bytes=65536", "bytes=0"),
                Exit::Status(0),
                "dma",
                "virtio_rng.0: read 0 of 65536 bytes",
            ),
            (
                good.replace("bt_klog_bad=0", "bt_klog_bad=2\nDMAVM-KLOG BUG: oh no"),
                Exit::Status(0),
                "kernel-log",
                "2 line(s) match, first: BUG: oh no",
            ),
            (
                good.replace(
                    "0 faults, 0 refused attach\ndmavm: stats: rng0",
                    "3 faults, 0 refused attach\ndmavm: stats: rng0",
                ),
                Exit::Status(0),
                "vmm-stats",
                "rand: 3 IOMMU fault(s)",
            ),
            (
                good.replace("dmavm: stats: rng0", "dmavm: stats: x"),
                Exit::Status(0),
                "vmm-stats",
                "rng0: translated, but dmavm has no counters",
            ),
        ];
        for (output, exit, check, needle) in cases {
            let (name, detail) = first_failure(&output, exit).unwrap_or_default();
            assert_eq!(name, check, "{needle}: {detail}");
            assert!(detail.contains(needle), "{check}: {detail}");
        }
        let mut h = host();
        h[1].after = "changed".into();
        let checks = judge(&machine(), &Observed::parse(&good), Exit::Status(0), &h, PAT, &[]);
        assert!(checks.iter().any(|c| c.detail.contains("ro: read-only, but its image changed")));
        assert_eq!(outcome(&checks, Exit::Status(0)), Outcome::Failed);
        assert_eq!(outcome(&checks, Exit::TimedOut(Duration::from_secs(1))), Outcome::Timeout);
    }
}
