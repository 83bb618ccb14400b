//! `dmavm boot-test`: boots a kernel on every machine of a matrix (and
//! every kernel command-line variant), N VMs at a time, and checks in each
//! that the guest sees what the machine model says it should: its devices
//! where the model puts them, each translated device in an IOMMU group
//! and each bypassing one outside, ACCESS_PLATFORM exactly where offered,
//! DMA on every device, a clean kernel log and no IOMMU faults.
//!
//! Direct mode runs `dmavm run` children on this machine's KVM
//! ([`runner`]); sandbox mode, where there is no hardware KVM, runs the
//! whole matrix inside the project's nested test bed ([`sandbox`]).

mod args;
mod error;
pub mod exit_status;
mod expect;
mod guest_files;
mod initramfs;
mod kcidb;
mod matrix;
mod merge;
mod net_peer;
mod netns;
mod observe;
mod report;
mod reproduce;
mod runner;
mod sandbox;
mod shard;
mod temp_dir;
mod termination;
mod timestamp;
mod verdict;
mod vm_args;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Instant;

pub use args::{Action, BootTestArgs, GuestArch, MergeArgs};
pub use error::Error;
pub use matrix::MatrixError;
pub use vm_args::machine_args;

use exit_status::{FAILED, PASSED, UNTESTED};
use report::{Heading, Report, RunResult};
use runner::Plan;
use shard::Shard;
use temp_dir::TempDir;
use termination::Interrupted;

/// Marks a finished run's JSON in `--protocol` output.
pub const RUN_MARK: &str = "@@BT-RUN ";
/// Marks one line of a run's log in `--protocol` output: `NAME<TAB>line`.
pub const LOG_MARK: &str = "@@BT-LOG ";

/// Where the VMs run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Direct,
    Sandbox { qemu: std::path::PathBuf, reason: String },
    Arm64Sandbox { qemu: std::path::PathBuf },
}

fn mode(args: &BootTestArgs) -> Result<Mode, Error> {
    use dmavm_tests::{Testbed, TestbedChoice};
    if args.direct {
        return Ok(Mode::Direct);
    }
    if args.arch == GuestArch::Aarch64 {
        // arm64 guests need an arm64 KVM: this host's, or the emulated
        // arm64 host of the arm64 sandbox.
        if cfg!(target_arch = "aarch64") && !args.sandbox {
            return Ok(Mode::Direct);
        }
        let sandbox = dmavm_tests::arm64::Arm64Sandbox::detect().map_err(Error::Testbed)?;
        return Ok(Mode::Arm64Sandbox { qemu: sandbox.qemu });
    }
    let choice = if args.sandbox {
        TestbedChoice::Sandbox { asked_by: "--sandbox was given".into() }
    } else {
        // Without an option the harness goes where the test bed's own
        // users would, so DMAVM_TESTBED steers both alike.
        TestbedChoice::from_env().map_err(Error::Testbed)?
    };
    match Testbed::choose(choice).map_err(Error::Testbed)? {
        Testbed::Direct => Ok(Mode::Direct),
        Testbed::Sandbox { qemu, reason } => Ok(Mode::Sandbox { qemu, reason }),
    }
}

/// The harness's verdict on the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every run passed.
    Passed,
    /// Some run did not.
    Failed,
    /// The kernel could not be tested: every run lacked a virtio driver
    /// it needs, or none could start.
    Untested,
}

impl Verdict {
    /// The verdict on `runs`.
    fn of(runs: &[RunResult]) -> Self {
        if runs.iter().all(RunResult::passed) {
            Self::Passed
        } else if runs.iter().all(|r| !r.missing_drivers.is_empty() || r.outcome == verdict::Outcome::Error) {
            Self::Untested
        } else {
            Self::Failed
        }
    }

    /// The exit status of `dmavm boot-test` with this verdict.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Passed => PASSED,
            Self::Failed => FAILED,
            Self::Untested => UNTESTED,
        }
    }
}

/// The runs `--only` and `--shard` select from the matrix: the runs of
/// the shard, and the names of all runs before sharding, in matrix order.
fn select(
    mut specs: Vec<matrix::RunSpec>,
    only: &[String],
    shard: Option<Shard>,
) -> Result<(Vec<matrix::RunSpec>, Vec<String>), Error> {
    if !only.is_empty() {
        specs.retain(|s| only.iter().any(|o| *o == s.name || *o == s.machine_name));
        if specs.is_empty() {
            return Err(Error::NoSuchRun(only.to_vec()));
        }
    }
    let names = specs.iter().map(|s| s.name.clone()).collect();
    if let Some(shard) = shard {
        specs.retain(|s| shard.holds(&s.name));
    }
    Ok((specs, names))
}

/// The kernel's SHA-256, reading it whole: a kernel that cannot be read
/// cannot be tested.
fn kernel_digest(kernel: &Path) -> Result<String, Error> {
    if !kernel.is_file() {
        return Err(Error::NoKernel(kernel.to_path_buf()));
    }
    let data =
        std::fs::read(kernel).map_err(|source| Error::Kernel { path: kernel.to_path_buf(), source })?;
    Ok(runner::sha256_hex(&data))
}

/// The one hint for a kernel that lacks virtio drivers, if the runs show
/// one: the guest listed the drivers it has and some the machines need
/// were not among them.
fn driver_hint(args: &BootTestArgs, runs: &[RunResult]) -> Option<String> {
    let mut absent: Vec<&str> = Vec::new();
    for d in runs.iter().flat_map(|r| &r.missing_drivers) {
        if !absent.contains(&d.as_str()) {
            absent.push(d);
        }
    }
    if absent.is_empty() {
        return None;
    }
    let how = match (&args.modules, &args.initrd) {
        (None, None) => "if they are modules (as in distribution kernels), give the kernel's modules with \
                         --modules DIR (its lib/modules/VERSION tree, or a folder of its .ko files) so that \
                         the harness puts them in the initramfs"
            .to_string(),
        (Some(dir), _) => {
            format!("{} holds no loadable module for them (or they failed to load)", dir.display())
        }
        (None, Some(i)) => format!("the initramfs {} does not load them", i.display()),
    };
    Some(format!(
        "hint: the guest's kernel has no {} driver, neither built in nor loaded: {how}",
        absent.join(", ")
    ))
}

/// `dmavm boot-test merge`.
fn merge_reports(args: &MergeArgs) -> Result<Verdict, Error> {
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push((path.clone(), merge::read(path)?));
    }
    let merged = merge::merge(reports)?;
    print!("{}", report::table(&merged));
    let _ = std::io::stdout().flush();
    write_reports(&merged, args.json.as_deref(), args.junit.as_deref(), args.kcidb.as_deref())?;
    Ok(Verdict::of(&merged.runs))
}

/// Writes the reports asked for; each that cannot be written is named.
fn write_reports(
    report: &Report,
    json: Option<&Path>,
    junit: Option<&Path>,
    kcidb: Option<&Path>,
) -> Result<(), Error> {
    let mut unwritten = Vec::new();
    for (path, text) in [(json, report.json()), (junit, report::junit(report)), (kcidb, kcidb::text(report))]
    {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                unwritten.push((path.to_path_buf(), e));
            }
        }
    }
    if unwritten.is_empty() {
        Ok(())
    } else {
        Err(Error::Reports(unwritten))
    }
}

/// `dmavm boot-test`: runs the matrix of `args`, prints a line per
/// finished run on stderr and the final table on stdout, and writes the
/// reports asked for. `dmavm` is the dmavm executable each run starts as
/// `dmavm run` (and sandbox mode copies into the emulated host).
///
/// An error means no verdict (bad input, the harness could not run the
/// matrix, a termination signal), or a report that could not be written
/// after the table was printed; [`Error::exit_status`] says which status
/// it is.
pub fn run(args: &BootTestArgs, dmavm: &Path) -> Result<Verdict, Error> {
    if let Some(Action::Merge(m)) = &args.action {
        return merge_reports(m);
    }
    let t0 = Instant::now();
    let started = timestamp::now();
    // clap requires --kernel unless a subcommand is given.
    let kernel = args.kernel.clone().unwrap_or_default();
    let kernel_sha256 = kernel_digest(&kernel)?;
    if let Some(i) = args.initrd.as_ref().filter(|i| !i.is_file()) {
        return Err(Error::NoInitrd(i.clone()));
    }
    if let Some(m) = args.modules.as_ref().filter(|m| !m.is_dir()) {
        return Err(Error::NoModules(m.clone()));
    }
    if args.arch == GuestArch::Aarch64 && args.initrd.is_none() {
        return Err(Error::NeedInitrd);
    }
    let (specs, all_names) =
        select(matrix::load_all(&args.matrix, args.arch.arch())?, &args.only, args.shard)?;
    let logs = match &args.logs {
        Some(logs) => {
            std::fs::create_dir_all(logs).map_err(|source| Error::Logs { path: logs.clone(), source })?;
            // Absolute, for the reports' log paths and KCIDB's log URLs.
            Some(std::fs::canonicalize(logs).map_err(|source| Error::Logs { path: logs.clone(), source })?)
        }
        None => None,
    };
    termination::catch_termination()?;
    let mode = mode(args)?;
    let work = TempDir::new("dmavm-boot-test")?;
    let mut outcome = if specs.is_empty() {
        if !args.protocol {
            eprintln!(
                "boot-test: shard {} holds none of the {} runs",
                args.shard.map_or(String::new(), |s| s.to_string()),
                all_names.len()
            );
        }
        Ok((Vec::new(), None))
    } else {
        execute(args, &kernel, logs.as_deref(), dmavm, &mode, &specs, work.path())
    };
    if let (Ok((runs, _)), Some(logs), false) = (&outcome, &logs, args.protocol) {
        let ctx = reproduce::Context {
            dmavm: dmavm.to_path_buf(),
            kernel: std::fs::canonicalize(&kernel).unwrap_or_else(|_| kernel.clone()),
            kvm_device: args.kvm_device.clone(),
        };
        if let Err(e) = reproduce::write_all(&ctx, logs, &work.path().join("initrd.img"), &specs, runs) {
            eprintln!("boot-test: {e}");
        }
    }
    drop(work);
    // Ctrl-C reaches the children too (scripts, QEMU, VMs), which may end
    // before the harness notices: whatever they left, it was interrupted.
    if let Some(Interrupted(signal)) = termination::interrupted() {
        outcome = Err(Error::Interrupted(signal));
    }
    let (mut runs, ready) = outcome?;
    for r in &mut runs {
        r.position = all_names.iter().position(|n| *n == r.name);
    }
    let verdict = Verdict::of(&runs);
    if args.protocol {
        return Ok(verdict);
    }
    let mode_name = match &mode {
        Mode::Direct => "direct",
        Mode::Sandbox { .. } => "sandbox",
        Mode::Arm64Sandbox { .. } => "arm64-sandbox",
    };
    let jobs = if mode_name == "direct" { args.jobs } else { sandbox::SANDBOX_JOBS };
    let heading = Heading {
        kernel: kernel.display().to_string(),
        kernel_sha256,
        arch: args.arch.name().into(),
        started,
        shard: args.shard,
        matrix_total: all_names.len(),
    };
    let report = Report::new(heading, mode_name, jobs, t0.elapsed().as_secs_f64(), ready, runs);
    print!("{}", report::table(&report));
    let _ = std::io::stdout().flush();
    if let Some(hint) = driver_hint(args, &report.runs) {
        eprintln!("boot-test: {hint}");
    }
    if verdict == Verdict::Untested {
        eprintln!("boot-test: the kernel could not be tested (exit status {UNTESTED})");
    }
    write_reports(&report, args.json.as_deref(), args.junit.as_deref(), args.kcidb.as_deref())?;
    Ok(verdict)
}

/// Prepares the initrd and runs the matrix; the results and, in sandbox
/// mode, when the emulated host was ready.
fn execute(
    args: &BootTestArgs,
    kernel: &Path,
    logs: Option<&Path>,
    dmavm: &Path,
    mode: &Mode,
    specs: &[matrix::RunSpec],
    work: &Path,
) -> Result<(Vec<RunResult>, Option<f64>), Error> {
    let patterns: Vec<String> = args::DEFAULT_FAIL_PATTERNS
        .iter()
        .map(|p| p.to_string())
        .chain(args.fail_pattern.iter().cloned())
        .collect();
    let base = match &args.initrd {
        Some(i) => i.clone(),
        None => {
            if !args.protocol {
                eprintln!(
                    "boot-test: building the initramfs (busybox{})",
                    args.modules
                        .as_ref()
                        .map_or(String::new(), |m| format!(", modules from {}", m.display()))
                );
            }
            initramfs::build(args.modules.as_deref(), work)?
        }
    };
    let initrd = work.join("initrd.img");
    initramfs::compose(&base, &initramfs::overlay(&patterns), &initrd)?;
    let mut cmdline = runner::BASE_CMDLINE.to_string();
    if let Some(extra) = args.cmdline.as_deref().filter(|c| !c.trim().is_empty()) {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    let plan = Plan {
        dmavm: dmavm.to_path_buf(),
        kernel: kernel.to_path_buf(),
        initrd,
        kvm_device: args.kvm_device.clone(),
        cmdline,
        timeout: args.timeout,
        jobs: args.jobs,
        logs: logs.map(Path::to_path_buf),
        work: work.to_path_buf(),
    };
    let total = specs.len();
    match mode {
        Mode::Direct => {
            if !args.protocol {
                eprintln!(
                    "boot-test: {total} runs, {} at a time, direct (this machine's {})",
                    args.jobs,
                    args.kvm_device.display()
                );
            }
            let mut done = 0;
            let mut failed = 0;
            let mut report = |r: &RunResult, log: &Path| {
                done += 1;
                failed += usize::from(!r.passed());
                if args.protocol {
                    emit(r, log, args.logs.is_some());
                } else {
                    eprintln!("boot-test: {}", report::progress(done, total, failed, r));
                }
            };
            runner::run_all(&plan, specs, &mut report)
                .map(|r| (r, None))
                .map_err(|Interrupted(s)| Error::Interrupted(s))
        }
        Mode::Sandbox { qemu, reason } => {
            let jobs = match args.jobs {
                n if n > sandbox::SANDBOX_JOBS => {
                    format!(" (not {n}: the emulated host is not reliable with more)")
                }
                _ => String::new(),
            };
            eprintln!(
                "boot-test: {total} runs in the sandbox: {reason}, so the matrix runs inside the project's nested \
                 test bed (one emulated host with nested SVM under {}), one VM at a time{jobs}",
                qemu.display()
            );
            sandbox::run(args, &plan, sandbox::Host::X86, qemu, specs)
        }
        Mode::Arm64Sandbox { qemu } => {
            eprintln!(
                "boot-test: {total} arm64 runs in the arm64 sandbox (one emulated arm64 host, \
                 qemu-system-aarch64 TCG at EL2 with KVM in VHE mode, under {}), one VM at a time",
                qemu.display()
            );
            sandbox::run(args, &plan, sandbox::Host::Arm64, qemu, specs)
        }
    }
}

/// `--protocol`: a run's log lines (when logs are kept) and its result,
/// for the outer harness.
fn emit(r: &RunResult, log: &Path, with_log: bool) {
    let mut out = std::io::stdout().lock();
    if with_log {
        if let Ok(f) = std::fs::File::open(log) {
            for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                let _ = writeln!(out, "{LOG_MARK}{}\t{}", r.name, line.trim_end_matches('\r'));
            }
        }
    }
    let _ = writeln!(out, "{RUN_MARK}{}", serde_json::to_string(r).unwrap_or_default());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::tests::run;
    use verdict::Outcome;

    fn default_matrix() -> Vec<matrix::RunSpec> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/matrix/default.toml");
        matrix::load_all(&[path], dmavm_machine::Arch::X86_64).unwrap()
    }

    #[test]
    fn three_shards_of_the_default_matrix_run_every_run_once() {
        let all = default_matrix();
        let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        let mut reversed = all.clone();
        reversed.reverse();
        let mut seen: Vec<String> = Vec::new();
        for index in 1..=3 {
            let shard = Some(Shard { index, count: 3 });
            let (runs, whole) = select(all.clone(), &[], shard).unwrap();
            assert_eq!(whole, names);
            let mine: Vec<String> = runs.iter().map(|s| s.name.clone()).collect();
            // The same shard whatever the order of the matrix.
            let (back, _) = select(reversed.clone(), &[], shard).unwrap();
            let mut theirs: Vec<String> = back.iter().map(|s| s.name.clone()).collect();
            theirs.reverse();
            assert_eq!(mine, theirs, "shard {index}/3");
            seen.extend(mine);
        }
        seen.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(seen, want, "every run in exactly one shard");
        // --only first, then the shard of what it left.
        let only = ["mixed".to_string()];
        let (_, whole) = select(all.clone(), &only, Some(Shard { index: 1, count: 2 })).unwrap();
        assert_eq!(whole, ["mixed/lazy", "mixed/strict"]);
        assert!(matches!(select(all, &["nothing".into()], None), Err(Error::NoSuchRun(_))));
    }

    #[test]
    fn verdicts_follow_git_bisect_run() {
        let passed = run("a", "m", Outcome::Passed, None);
        let failed = run("b", "m", Outcome::Failed, Some(("devices", "x")));
        let error = run("c", "m", Outcome::Error, Some(("harness", "cannot start")));
        let mut no_driver = failed.clone();
        no_driver.missing_drivers = vec!["virtio_blk".into()];
        assert_eq!(Verdict::of(&[]).exit_status(), 0);
        assert_eq!(Verdict::of(std::slice::from_ref(&passed)).exit_status(), 0);
        assert_eq!(Verdict::of(&[passed.clone(), failed.clone()]).exit_status(), 1);
        assert_eq!(Verdict::of(&[failed.clone(), error.clone()]).exit_status(), 1);
        assert_eq!(Verdict::of(std::slice::from_ref(&error)).exit_status(), 125);
        assert_eq!(Verdict::of(&[no_driver.clone(), error]).exit_status(), 125);
        assert_eq!(Verdict::of(&[no_driver.clone(), failed]).exit_status(), 1);
        assert_eq!(Verdict::of(&[no_driver.clone(), passed]).exit_status(), 1);
    }

    #[test]
    fn one_hint_names_modules() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: BootTestArgs,
        }
        let args = |extra: &[&str]| {
            let mut words = vec!["x", "--kernel", "/k", "--matrix", "m.toml"];
            words.extend(extra);
            Cli::try_parse_from(words).unwrap().args
        };
        let mut a = run("a", "m", Outcome::Failed, Some(("devices", "x")));
        a.missing_drivers = vec!["virtio_blk".into(), "virtio-mmio".into()];
        let mut b = a.clone();
        b.missing_drivers = vec!["virtio_iommu".into(), "virtio_blk".into()];
        let hint = driver_hint(&args(&[]), &[a.clone(), b]).unwrap();
        assert!(
            hint.starts_with("hint: the guest's kernel has no virtio_blk, virtio-mmio, virtio_iommu driver"),
            "{hint}"
        );
        assert!(hint.contains("--modules DIR"), "{hint}");
        let hint = driver_hint(&args(&["--modules", "/mods"]), &[a]).unwrap();
        assert!(hint.contains("/mods holds no loadable module"), "{hint}");
        assert_eq!(driver_hint(&args(&[]), &[run("p", "m", Outcome::Passed, None)]), None);
    }
}
