//! Direct mode: the runs as `dmavm run` child processes on this machine's
//! KVM, N at a time, each killed at its timeout, each judged when it ends.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::expect::{Expectations, Kind, NetLink};
use super::matrix::RunSpec;
use super::net_peer::{Peer, PeerSeen};
use super::report::RunResult;
use super::termination::{interrupted, Interrupted};
use super::verdict::{judge, missing_drivers, outcome, Check, Exit, HostDisk, Outcome};
use super::vm_args;
use crate::error::{io, Error};

/// Size of every disk image the harness makes.
pub const IMAGE_BYTES: usize = 2 << 20;
/// What the guest's check writes over each writable disk's first MiB:
/// `yes dmavm-boot-test | head -c 1048576`.
pub fn pattern() -> Vec<u8> {
    b"dmavm-boot-test\n".iter().copied().cycle().take(1 << 20).collect()
}

/// The kernel command line every run starts with.
pub const BASE_CMDLINE: &str = "console=ttyS0 quiet panic=-1 dmavm.check=boot-test";

/// What every run of one harness shares.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The dmavm binary the VMs run with (this one).
    pub dmavm: PathBuf,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initrd, with the harness's overlay.
    pub initrd: PathBuf,
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// Words before each run's own: [`BASE_CMDLINE`] and `--cmdline`.
    pub cmdline: String,
    /// A run's limit unless the matrix sets one.
    pub timeout: Duration,
    /// VMs at a time.
    pub jobs: usize,
    /// Where to keep logs, if anywhere.
    pub logs: Option<PathBuf>,
    /// Scratch space (disk images, logs not kept).
    pub work: PathBuf,
}

/// A run's log file name.
pub fn log_name(run: &str) -> String {
    format!("{}.log", run.replace('/', "_"))
}

/// The kernel command-line word that asks the guest's check for the
/// `net` exchange on each link (their MACs in link order, which gives each
/// its subnet), or none without links.
pub fn net_word(links: &[NetLink]) -> Option<String> {
    if links.is_empty() {
        return None;
    }
    Some(format!("dmavm.bt_net={}", links.iter().map(|l| l.mac.as_str()).collect::<Vec<_>>().join(",")))
}

/// The full kernel command line of a run.
pub fn cmdline(plan: &Plan, spec: &RunSpec) -> String {
    let net = net_word(&Expectations::of(&spec.machine).nets).unwrap_or_default();
    [plan.cmdline.as_str(), spec.cmdline.as_str(), net.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

struct Active {
    index: usize,
    child: Child,
    started: Instant,
    limit: Duration,
    dir: PathBuf,
    log: PathBuf,
    images: Vec<(String, String)>,
    /// The `net` check's peer, for a machine with network devices.
    peer: Option<Peer>,
}

/// The SHA-256 of `data` in lower-case hex, as the guest's `sha256sum`
/// prints it, so that the two compare as strings.
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn random_image(path: &Path) -> Result<String, Error> {
    let mut data = vec![0u8; IMAGE_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .map_err(io("reading /dev/urandom for a disk image"))?;
    std::fs::write(path, &data).map_err(io(format!("writing {}", path.display())))?;
    Ok(sha256_hex(&data))
}

fn start(plan: &Plan, index: usize, spec: &RunSpec) -> Result<Active, Error> {
    let dir = plan.work.join(format!("run{index}"));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let machine = vm_args::with_images(&spec.machine, &dir);
    let expected = Expectations::of(&machine);
    let machine = vm_args::with_taps(&machine, &expected.nets);
    let mut images = Vec::new();
    for d in expected.devices.iter().filter(|d| matches!(d.kind, Kind::Disk { .. })) {
        images.push((d.id.clone(), random_image(&dir.join(format!("{}.img", d.id)))?));
    }
    let log = match &plan.logs {
        Some(logs) => logs.join(log_name(&spec.name)),
        None => dir.join("serial.log"),
    };
    let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let err = out.try_clone().map_err(io("duplicating the log's file descriptor"))?;
    let mut cmd = Command::new(&plan.dmavm);
    cmd.arg("run")
        .arg("--kernel")
        .arg(&plan.kernel)
        .arg("--initrd")
        .arg(&plan.initrd)
        .arg("--cmdline")
        .arg(cmdline(plan, spec))
        .arg("--kvm-device")
        .arg(&plan.kvm_device)
        .arg("--stats")
        .args(vm_args::machine_args(&machine, spec.cpus, spec.memory))
        .args(vm_args::test_args(spec))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let (child, peer) = if expected.nets.is_empty() {
        (cmd.spawn().map_err(io(format!("starting {}", plan.dmavm.display())))?, None)
    } else {
        let (peer, child) = Peer::start(expected.nets.clone(), spec.net_corrupt, cmd).map_err(Error::Net)?;
        (child, Some(peer))
    };
    Ok(Active {
        index,
        child,
        started: Instant::now(),
        limit: spec.timeout.unwrap_or(plan.timeout),
        dir,
        log,
        images,
        peer,
    })
}

fn host_disks(a: &Active) -> Vec<HostDisk> {
    let pattern_len = 1 << 20;
    a.images
        .iter()
        .map(|(id, before)| {
            let data = std::fs::read(a.dir.join(format!("{id}.img"))).unwrap_or_default();
            HostDisk {
                id: id.clone(),
                before: before.clone(),
                after: sha256_hex(&data),
                after_first_mib: sha256_hex(&data[..data.len().min(pattern_len)]),
            }
        })
        .collect()
}

fn finish(plan: &Plan, spec: &RunSpec, a: &mut Active, exit: Exit) -> RunResult {
    // The VM has ended: its peer has seen all it will.
    let peers: Vec<PeerSeen> = a.peer.take().map(Peer::finish).unwrap_or_default();
    let text = std::fs::read(&a.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let observed = super::observe::Observed::parse(&text);
    let machine = vm_args::with_images(&spec.machine, &a.dir);
    let expected = Expectations::of(&machine);
    let checks = judge(&expected, &observed, exit, &host_disks(a), &sha256_hex(&pattern()), &peers);
    let mut r = result(plan, spec, outcome(&checks, exit), a.started.elapsed().as_secs_f64(), checks);
    r.missing_drivers = missing_drivers(&expected, &observed);
    r
}

/// A run's result from its checks.
pub fn result(plan: &Plan, spec: &RunSpec, outcome: Outcome, secs: f64, checks: Vec<Check>) -> RunResult {
    RunResult {
        name: spec.name.clone(),
        machine: spec.machine_name.clone(),
        variant: spec.variant.clone(),
        matrix: spec.matrix.clone(),
        cmdline: cmdline(plan, spec),
        outcome,
        secs,
        first_failure: checks.iter().find(|c| !c.passed).cloned(),
        checks,
        log: plan.logs.as_ref().map(|l| l.join(log_name(&spec.name)).display().to_string()),
        position: None,
        missing_drivers: Vec::new(),
        net: !Expectations::of(&spec.machine).nets.is_empty(),
    }
}

/// A run the harness could not start.
pub fn harness_error(plan: &Plan, spec: &RunSpec, why: String) -> RunResult {
    let check = Check { name: "harness".into(), passed: false, detail: why };
    result(plan, spec, Outcome::Error, 0.0, vec![check])
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// Runs `specs`, `plan.jobs` at a time, calling `done` with each result
/// (and its log) as it ends; the results in matrix order. On a termination
/// signal every VM is killed and waited for.
pub fn run_all(
    plan: &Plan,
    specs: &[RunSpec],
    done: &mut dyn FnMut(&RunResult, &Path),
) -> Result<Vec<RunResult>, Interrupted> {
    let mut results: Vec<Option<RunResult>> = vec![None; specs.len()];
    let mut active: Vec<Active> = Vec::new();
    let mut next = 0;
    loop {
        if let Some(i) = interrupted() {
            for mut a in active {
                let _ = a.child.kill();
                let _ = a.child.wait();
            }
            return Err(i);
        }
        while active.len() < plan.jobs && next < specs.len() {
            match start(plan, next, &specs[next]) {
                Ok(a) => active.push(a),
                Err(e) => {
                    let r = harness_error(plan, &specs[next], e.to_string());
                    done(&r, Path::new("/dev/null"));
                    results[next] = Some(r);
                }
            }
            next += 1;
        }
        let mut i = 0;
        while i < active.len() {
            let a = &mut active[i];
            let exit = match a.child.try_wait() {
                Ok(Some(status)) => Some(Exit::Status(exit_code(status))),
                Ok(None) if a.started.elapsed() >= a.limit => {
                    let _ = a.child.kill();
                    let _ = a.child.wait();
                    Some(Exit::TimedOut(a.limit))
                }
                Ok(None) => None,
                Err(_) => {
                    let _ = a.child.kill();
                    let _ = a.child.wait();
                    Some(Exit::Status(255))
                }
            };
            match exit {
                Some(exit) => {
                    let mut a = active.swap_remove(i);
                    let r = finish(plan, &specs[a.index], &mut a, exit);
                    done(&r, &a.log);
                    let _ = std::fs::remove_dir_all(&a.dir);
                    results[a.index] = Some(r);
                }
                None => i += 1,
            }
        }
        if active.is_empty() && next >= specs.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_what_the_guest_writes() {
        let p = pattern();
        assert_eq!(p.len(), 1 << 20);
        assert!(p.starts_with(b"dmavm-boot-test\ndmavm-boot-test\n"));
        assert!(super::super::guest_files::BOOT_TEST_CHECK.contains("yes dmavm-boot-test | head -c 1048576"));
        assert_eq!(log_name("a/b"), "a_b.log");
    }

    #[test]
    fn the_guest_is_told_each_link_by_its_mac_in_order() {
        let text = "[machine.n]\ncmdline = \"x=1\"\n[[machine.n.net]]\nmac = \"02:00:00:00:00:01\"\n\
                    [[machine.n.net]]\nmac = \"02:00:00:00:00:02\"\n[machine.plain]\n[[machine.plain.rng]]\n";
        let specs = crate::matrix::parse(text, "t.toml").unwrap();
        let plan = Plan {
            dmavm: "/d".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            kvm_device: "/dev/kvm".into(),
            cmdline: BASE_CMDLINE.into(),
            timeout: Duration::from_secs(1),
            jobs: 1,
            logs: None,
            work: "/w".into(),
        };
        assert_eq!(
            cmdline(&plan, &specs[0]),
            format!("{BASE_CMDLINE} x=1 dmavm.bt_net=02:00:00:00:00:01,02:00:00:00:00:02")
        );
        assert_eq!(cmdline(&plan, &specs[1]), BASE_CMDLINE);
        // The VM is started on the TAPs the peer makes.
        let exp = Expectations::of(&specs[0].machine);
        let args = vm_args::machine_args(&vm_args::with_taps(&specs[0].machine, &exp.nets), 1, 64 << 20);
        let nets: Vec<&String> = args.windows(2).filter(|w| w[0] == "--net").map(|w| &w[1]).collect();
        assert!(
            nets[0].starts_with("tap=btnet0,mac=02:00:00:00:00:01,") && nets[1].starts_with("tap=btnet1,"),
            "{nets:?}"
        );
        assert!(result(&plan, &specs[0], Outcome::Passed, 1.0, vec![]).net);
        assert!(!result(&plan, &specs[1], Outcome::Passed, 1.0, vec![]).net);
    }

    #[test]
    fn digests_are_spelled_as_sha256sum_spells_them() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
