//! Sandbox mode, for machines without hardware KVM (a PVM /dev/kvm cannot
//! boot Linux): the whole matrix runs inside one emulated host of the
//! project's test bed (`dmavm_tests`, `resources/testbed/`). The image
//! (`build-l1.sh` with `DMAVM_L1_OUT`, `DMAVM_L1_LEAN`, `DMAVM_L1_EXTRA`)
//! carries this dmavm, the kernel, the initrd and the matrices and a
//! scenario, `/scenarios/boot-test.sh`, that runs `dmavm boot-test
//! --direct --protocol` there; L1's init (`l1-init`) runs it and powers
//! off. Results come back on L1's serial console, one JSON line per run
//! (and each run's log when logs are kept).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dmavm_tests::Paths;
use dmavm_tests::{l1_markers, SILENCE_CHECK_PERIOD};

use super::args::BootTestArgs;
use super::initramfs;
use super::matrix::RunSpec;
use super::report::{progress, RunResult};
use super::runner::{harness_error, log_name, Plan};
use super::termination::{interrupted, Interrupted};
use super::{LOG_MARK, RUN_MARK};
use crate::error::{io, last_line, Error};

/// Seconds for L1 to boot, load KVM and power off, on top of the runs.
const L1_ALLOWANCE_SECS: u64 = 180;
/// The emulated host's vCPUs: with two (multi-threaded TCG), L1's kvm
/// hits a stale int3 of its own jump-label patching (an Oops in
/// kvm_wait_lapic_expire) in about 1 of 3 tries as VMs come and go on
/// both.
const L1_CPUS: usize = 1;
/// VMs at a time inside the emulated host, whatever --jobs says: with two,
/// L1's one vCPU halts for good in about 1 of 3 tries, and two at a
/// time take no less time on 2 host cores (docs/benchmarks.md).
pub const SANDBOX_JOBS: usize = 1;
/// Seconds per round of runs on top of their limit (start, judging).
const PER_ROUND_SLACK_SECS: u64 = 30;

/// Which emulated host runs the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The x86 test bed: QEMU TCG with an emulated SVM CPU, L1 Linux with
    /// kvm-amd, x86_64 guests.
    X86,
    /// The arm64 sandbox (dmavm_tests::arm64): qemu-system-aarch64 TCG at
    /// EL2, L1 Linux with KVM in VHE mode, arm64 guests.
    Arm64,
}

/// Seconds for the arm64 L1 to boot and power off (an arm64 L1 boots
/// slower under TCG).
const ARM64_L1_ALLOWANCE_SECS: u64 = 240;
/// The arm64 L1's memory in MiB, as the arm64 scenarios give it.
const ARM64_L1_MEMORY_MIB: u64 = 2048;

/// `'text'` for sh, quotes escaped.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.stdin(Stdio::null()).output().map_err(io(what))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Step { what: what.into(), last: last_line(&out.stderr) })
}

/// The test bed's L1 kernel (`build/guest` of the checkout), fetched by
/// `resources/guest/fetch-kernel.sh` when it is not there yet.
fn l1_kernel(paths: &Paths) -> Result<PathBuf, Error> {
    let guest = paths.guest();
    if !guest.join("kver").is_file() || !guest.join("vmlinuz").is_file() {
        eprintln!("boot-test: fetching the test bed's kernel (resources/guest/fetch-kernel.sh)");
        let script = paths.resources().join("guest").join("fetch-kernel.sh");
        run_checked(
            Command::new("bash").arg(script).current_dir(&paths.root),
            "fetching the test bed's kernel",
        )?;
    }
    Ok(guest.join("vmlinuz"))
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to).map(drop).map_err(io(format!("copying {} to {}", from.display(), to.display())))
}

/// The inner harness's command line; `whole` false leaves out `--only`
/// and `--shard` (a retry names its runs itself, see [`matrix_script`]).
fn inner_command(args: &BootTestArgs, plan: &Plan, matrices: &[String], whole: bool) -> String {
    let mut words = vec![
        "/bin/dmavm".to_string(),
        "boot-test".into(),
        "--direct".into(),
        "--protocol".into(),
        "--arch".into(),
        args.arch.name().into(),
        "--kernel".into(),
        "/boot-test/kernel".into(),
        "--initrd".into(),
        "/boot-test/initrd.img".into(),
        "--jobs".into(),
        SANDBOX_JOBS.to_string(),
        "--timeout".into(),
        format!("{}ms", plan.timeout.as_millis()),
    ];
    for m in matrices {
        words.extend(["--matrix".into(), m.clone()]);
    }
    if whole {
        for o in &args.only {
            words.extend(["--only".into(), o.clone()]);
        }
        if let Some(s) = args.shard {
            words.extend(["--shard".into(), s.to_string()]);
        }
    }
    if let Some(c) = &args.cmdline {
        words.extend(["--cmdline".into(), c.clone()]);
    }
    for p in &args.fail_pattern {
        words.extend(["--fail-pattern".into(), p.clone()]);
    }
    if args.logs.is_some() {
        words.extend(["--logs".into(), "/tmp/boot-test-logs".into()]);
    }
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// `/scenarios/boot-test.sh`: `tun` (what loads the tun driver, or
/// nothing), then `whole` (the inner harness on the whole matrix) or, when
/// a retry in a fresh emulated host (see [`run`]) names the runs left
/// unfinished in BOOT_TEST_RETRY (l1-init exports the kernel command
/// line's `dmavm.env.*` words), `retry` with `--only` each of them; then
/// the inner harness's exit status.
fn matrix_script(tun: &str, whole: &str, retry: &str) -> String {
    format!(
        "#!/bin/sh\n# made by dmavm boot-test: the matrix inside the emulated host\n{tun}\
         if [ -n \"${{BOOT_TEST_RETRY:-}}\" ]; then\n\
         \x20 set --\n\
         \x20 for name in $(echo \"$BOOT_TEST_RETRY\" | tr ',' ' '); do set -- \"$@\" --only \"$name\"; done\n\
         \x20 {retry} \"$@\" 2>&1\n\
         else\n\
         \x20 {whole} 2>&1\n\
         fi\n\
         echo \"boot-test-status=$?\"\n"
    )
}

/// Runs the matrix in the sandbox.
pub fn run(
    args: &BootTestArgs,
    plan: &Plan,
    host: Host,
    qemu: &Path,
    specs: &[RunSpec],
) -> Result<(Vec<RunResult>, Option<f64>), Error> {
    let t0 = Instant::now();
    let paths = Paths::new();
    let (kernel, arm64_base) = match host {
        Host::X86 => (l1_kernel(&paths)?, None),
        Host::Arm64 => {
            eprintln!(
                "boot-test: preparing the arm64 sandbox (arm64 kernel and L1 image, the aarch64 dmavm of this \
                 tree cross-built: minutes the first time)"
            );
            let base = dmavm_tests::arm64::prepare_l1(&paths).map_err(Error::Testbed)?;
            (dmavm_tests::arm64::guest_dir(&paths).join("Image"), Some(base))
        }
    };

    // The image's extra files.
    let extra = plan.work.join("l1-extra");
    let bt = extra.join("boot-test");
    let scenarios = extra.join("scenarios");
    for d in [&bt, &scenarios, &bt.join("matrix")] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    copy(&plan.kernel, &bt.join("kernel"))?;
    copy(&plan.initrd, &bt.join("initrd.img"))?;
    let mut matrices = Vec::new();
    for (i, m) in args.matrix.iter().enumerate() {
        let stem = m.file_name().map_or("matrix.toml".into(), |n| n.to_string_lossy().into_owned());
        let inner = format!("/boot-test/matrix/{i}-{stem}");
        copy(m, &extra.join(inner.trim_start_matches('/')))?;
        matrices.push(inner);
    }
    // The net check's TAPs need the emulated host's tun driver, a module
    // of its image (resources/testbed/build-l1.sh) that nothing else loads.
    let tun = if specs.iter().any(|s| !crate::expect::Expectations::of(&s.machine).nets.is_empty()) {
        "[ -c /dev/net/tun ] || insmod /lib/modules/tun.ko\n"
    } else {
        ""
    };
    let script = matrix_script(
        tun,
        &inner_command(args, plan, &matrices, true),
        &inner_command(args, plan, &matrices, false),
    );
    let script_path = scenarios.join("boot-test.sh");
    std::fs::write(&script_path, script).map_err(io(format!("writing {}", script_path.display())))?;

    // The image.
    let image = plan.work.join("l1.cpio");
    match &arm64_base {
        None => {
            let empty = plan.work.join("no-payloads");
            std::fs::create_dir_all(&empty).map_err(io(format!("creating {}", empty.display())))?;
            eprintln!("boot-test: building the emulated host's image (resources/testbed/build-l1.sh)");
            run_checked(
                Command::new("bash")
                    .arg(paths.resources().join("testbed").join("build-l1.sh"))
                    .arg(&plan.dmavm)
                    .arg(&empty)
                    .env("DMAVM_L1_OUT", &image)
                    .env("DMAVM_L1_LEAN", "1")
                    .env("DMAVM_L1_EXTRA", &extra)
                    .current_dir(&paths.root),
                "building the emulated host's image",
            )?;
        }
        // The arm64 L1 image with the matrix's files on top (Linux unpacks
        // concatenated archives in order).
        Some(base) => initramfs::compose(base, &initramfs::archive_dir(&extra)?, &image)?,
    }
    let _ = std::fs::remove_dir_all(&extra);

    let emulated = Emulated { host, qemu, kernel: &kernel, image: &image };
    let whole = Attempt { retry: None, t0, total: specs.len(), done: 0, failed: 0 };
    let first = boot(plan, &emulated, specs, &whole)?;
    let (mut runs, ready, mut lost) = (first.runs, first.ready, first.unfinished);
    for attempt in 2..=1 + LOST_WAKEUP_RETRIES {
        let Some(unfinished) = lost.take() else { break };
        // The names travel on L1's kernel command line as one word.
        if unfinished.is_empty() || unfinished.iter().any(|n| !retry_name(n)) {
            break;
        }
        eprintln!(
            "boot-test: running {} again in a fresh emulated host (try {attempt})",
            unfinished.join(", ")
        );
        let again: Vec<RunSpec> = specs.iter().filter(|s| unfinished.contains(&s.name)).cloned().collect();
        let failed = runs.iter().filter(|r| !unfinished.contains(&r.name) && !r.passed()).count();
        let retry = Attempt {
            retry: Some(attempt),
            t0,
            total: specs.len(),
            done: specs.len() - unfinished.len(),
            failed,
        };
        let redone = boot(plan, &emulated, &again, &retry)?;
        for r in redone.runs {
            if let Some(slot) = runs.iter_mut().find(|old| old.name == r.name) {
                *slot = r;
            }
        }
        lost = redone.unfinished;
    }
    Ok((runs, ready))
}

/// Fresh emulated hosts for the runs one that lost a wakeup left
/// unfinished.
const LOST_WAKEUP_RETRIES: usize = 2;

/// Whether a run's name can be passed to a retry (a single word of
/// L1's kernel command line, split at commas there).
fn retry_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-./+".contains(c))
}

/// The emulated host a matrix runs in: its kind, the QEMU that runs it,
/// its kernel and image.
struct Emulated<'a> {
    host: Host,
    qemu: &'a Path,
    kernel: &'a Path,
    image: &'a Path,
}

/// What one emulated host did with its runs.
struct HostRun {
    /// Every run's result (a harness error for those that gave none).
    runs: Vec<RunResult>,
    /// When L1 got ready, in seconds from the harness's start.
    ready: Option<f64>,
    /// When QEMU lost a wakeup of L1's vCPU (see `dmavm_tests::L1Monitor`):
    /// the runs it left unfinished, which the caller tries again.
    unfinished: Option<Vec<String>>,
}

/// Which emulated host of the matrix's this is, for its messages.
struct Attempt {
    /// The try number of a retry (named in BOOT_TEST_RETRY); none for the
    /// first host, which runs the whole matrix.
    retry: Option<usize>,
    /// When the harness started (the first host's readiness counts the
    /// image from there).
    t0: Instant,
    /// Runs of the whole matrix, those finished before this host, and how
    /// many of those failed: progress lines count on across retries.
    total: usize,
    done: usize,
    failed: usize,
}

/// One emulated host running `specs`.
fn boot(plan: &Plan, emulated: &Emulated, specs: &[RunSpec], attempt: &Attempt) -> Result<HostRun, Error> {
    let Attempt { retry, t0, total, .. } = *attempt;
    let Emulated { host, qemu, kernel, image } = *emulated;
    // Time limits: inside L1 for the scenario, here for QEMU.
    let rounds = specs.len() as u64;
    let longest = specs.iter().map(|s| s.timeout.unwrap_or(plan.timeout)).max().unwrap_or(plan.timeout);
    let inner_limit = rounds * (longest.as_secs() + 1 + PER_ROUND_SLACK_SECS) + 60;
    let allowance = match host {
        Host::X86 => L1_ALLOWANCE_SECS,
        Host::Arm64 => ARM64_L1_ALLOWANCE_SECS,
    };
    let overall = Duration::from_secs(inner_limit + allowance);
    let biggest = specs.iter().map(|s| s.memory >> 20).max().unwrap_or(256);
    let memory_mib = (1024 + SANDBOX_JOBS as u64 * (biggest + 128)).clamp(1536, 16 << 10);
    let console = match host {
        Host::X86 => "ttyS0",
        Host::Arm64 => "ttyAMA0",
    };
    let mut append =
        format!("console={console} panic=-1 quiet dmavm.scenarios=boot-test dmavm.timeout={inner_limit}");
    if retry.is_some() {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        append.push_str(&format!(" dmavm.env.BOOT_TEST_RETRY={}", names.join(",")));
    }

    let log_file = retry.map_or("sandbox.log".to_string(), |n| format!("sandbox-{n}.log"));
    let sandbox_log_path = match &plan.logs {
        Some(l) => l.join(&log_file),
        None => plan.work.join(&log_file),
    };
    let mut sandbox_log =
        File::create(&sandbox_log_path).map_err(io(format!("creating {}", sandbox_log_path.display())))?;
    let stderr_path = plan.work.join("qemu.stderr");
    let stderr = File::create(&stderr_path).map_err(io(format!("creating {}", stderr_path.display())))?;
    let mut cmd = Command::new(qemu);
    match host {
        Host::X86 => cmd.args(dmavm_tests::l1_qemu_args(kernel, image, &append, L1_CPUS, memory_mib)),
        Host::Arm64 => cmd.args(dmavm_tests::arm64::l1_qemu_args(
            kernel,
            image,
            &append,
            dmavm_tests::arm64::smp(),
            ARM64_L1_MEMORY_MIB.max(memory_mib),
        )),
    };
    let monitor = dmavm_tests::L1Monitor::new("boot-test");
    cmd.args(monitor.qemu_args());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().map_err(io(format!("starting {}", qemu.display())))?;
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }

    let mut results: HashMap<String, RunResult> = HashMap::new();
    let mut logs: HashMap<String, File> = HashMap::new();
    let mut ready: Option<f64> = None;
    let mut sandbox_error: Option<String> = None;
    let mut failed = attempt.failed;
    let started = Instant::now();
    let mut stopped: Option<Interrupted> = None;
    let mut timed_out = false;
    let mut lost: Option<String> = None;
    let (mut last_line, mut last_check) = (Instant::now(), Instant::now());
    loop {
        if let Some(i) = interrupted() {
            stopped = Some(i);
            break;
        }
        if started.elapsed() > overall {
            timed_out = true;
            break;
        }
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                last_line = Instant::now();
                line
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last_line.elapsed() < SILENCE_CHECK_PERIOD || last_check.elapsed() < SILENCE_CHECK_PERIOD {
                    continue;
                }
                last_check = Instant::now();
                let Some(w) = monitor.lost_wakeups(Duration::from_secs(1)).first().copied() else { continue };
                let why = w.to_string();
                eprintln!("boot-test: {why}; stopping it");
                let _ = writeln!(sandbox_log, "# {why}; stopping it");
                for l in monitor.account() {
                    let _ = writeln!(sandbox_log, "{l}");
                }
                lost = Some(why);
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(i) = line.find(LOG_MARK) {
            if let (Some(dir), Some((name, text))) = (&plan.logs, line[i + LOG_MARK.len()..].split_once('\t'))
            {
                if !logs.contains_key(name) {
                    if let Ok(f) = File::create(dir.join(log_name(name))) {
                        logs.insert(name.to_string(), f);
                    }
                }
                if let Some(f) = logs.get_mut(name) {
                    let _ = writeln!(f, "{text}");
                }
            }
            continue;
        }
        let _ = writeln!(sandbox_log, "[{:8.3}] {line}", t0.elapsed().as_secs_f64());
        if let Some(i) = line.find(RUN_MARK) {
            match serde_json::from_str::<RunResult>(&line[i + RUN_MARK.len()..]) {
                Ok(r) => {
                    failed += usize::from(!r.passed());
                    let done = attempt.done + results.len() + 1;
                    eprintln!("boot-test: {}", progress(done, total, failed, &r));
                    results.insert(r.name.clone(), r);
                }
                Err(e) => eprintln!("boot-test: unreadable result from the emulated host: {e}"),
            }
        } else if ready.is_none() && line.contains(l1_markers::READY) {
            let t = t0.elapsed().as_secs_f64();
            ready = Some(t);
            match retry {
                None => eprintln!("boot-test: emulated host ready after {t:.1}s (image, boot, kvm-amd)"),
                Some(n) => eprintln!(
                    "boot-test: fresh emulated host (try {n}) ready after {:.1}s",
                    started.elapsed().as_secs_f64()
                ),
            }
        } else if let Some(i) = line.find(l1_markers::ERROR) {
            sandbox_error = Some(line[i + l1_markers::ERROR.len()..].trim().to_string());
        } else if line.contains("boot-test-status=") || line.contains(l1_markers::END) {
            // The inner harness's own status; its errors are in the log.
        } else if let Some(i) = line.find("dmavm: error: ") {
            sandbox_error.get_or_insert_with(|| line[i..].to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(Interrupted(signal)) = stopped {
        return Err(Error::Interrupted(signal));
    }
    let qemu_err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let why = if let Some(l) = &lost {
        format!("the emulated host stopped: {l}")
    } else if let Some(e) = sandbox_error {
        format!("the emulated host reported: {e}")
    } else if timed_out {
        format!("the emulated host did not finish within {}s", overall.as_secs())
    } else if let Some(l) = qemu_err.lines().rev().find(|l| !l.trim().is_empty()) {
        format!("the emulated host ended before this run reported; QEMU: {l}")
    } else {
        "the emulated host ended before this run reported".to_string()
    };
    let kept =
        plan.logs.as_ref().map(|_| format!("; see {}", sandbox_log_path.display())).unwrap_or_default();
    let unfinished: Vec<String> =
        specs.iter().filter(|s| !results.contains_key(&s.name)).map(|s| s.name.clone()).collect();
    let runs = specs
        .iter()
        .map(|s| match results.remove(&s.name) {
            Some(mut r) => {
                // As this harness knows it, not as the emulated host does.
                r.matrix = s.matrix.clone();
                r.log = plan.logs.as_ref().map(|l| l.join(log_name(&s.name)).display().to_string());
                r
            }
            None => harness_error(plan, s, format!("{why}{kept}")),
        })
        .collect();
    Ok(HostRun { runs, ready, unfinished: lost.map(|_| unfinished) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_runs_only_the_runs_it_names() {
        let script = matrix_script("", "printf '<%s>' whole", "printf '<%s>' retry");
        let run = |retry: Option<&str>| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(&script).env_remove("BOOT_TEST_RETRY");
            if let Some(r) = retry {
                cmd.env("BOOT_TEST_RETRY", r);
            }
            String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
        };
        assert_eq!(run(None), "<whole>boot-test-status=0\n");
        assert_eq!(
            run(Some("vtd/lazy,no-iommu/strict")),
            "<retry><--only><vtd/lazy><--only><no-iommu/strict>boot-test-status=0\n"
        );
    }

    #[test]
    fn only_single_word_names_are_retried() {
        assert!(retry_name("vtd-bridges/lazy"));
        assert!(retry_name("pci_1.2+x"));
        for bad in ["", "a b", "a,b", "a;b", "x'y"] {
            assert!(!retry_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn quoting_survives_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote("x'y \"$HOME\" `z`")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'y \"$HOME\" `z`");
    }
}
