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
mod matrix;
mod observe;
mod report;
mod runner;
mod sandbox;
mod temp_dir;
mod termination;
mod verdict;
mod vm_args;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Instant;

pub use args::BootTestArgs;
pub use error::Error;
pub use matrix::MatrixError;
pub use vm_args::machine_args;

use exit_status::{FAILED, PASSED};
use report::{Report, RunResult};
use runner::Plan;
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
}

fn mode(args: &BootTestArgs) -> Result<Mode, Error> {
    use dmavm_tests::{Testbed, TestbedChoice};
    if args.direct {
        return Ok(Mode::Direct);
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
}

impl Verdict {
    /// The exit status of `dmavm boot-test` with this verdict.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Passed => PASSED,
            Self::Failed => FAILED,
        }
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
    let t0 = Instant::now();
    if !args.kernel.is_file() {
        return Err(Error::NoKernel(args.kernel.clone()));
    }
    if let Some(i) = args.initrd.as_ref().filter(|i| !i.is_file()) {
        return Err(Error::NoInitrd(i.clone()));
    }
    if let Some(m) = args.modules.as_ref().filter(|m| !m.is_dir()) {
        return Err(Error::NoModules(m.clone()));
    }
    let mut specs = matrix::load_all(&args.matrix)?;
    if !args.only.is_empty() {
        specs.retain(|s| args.only.iter().any(|o| *o == s.name || *o == s.machine_name));
        if specs.is_empty() {
            return Err(Error::NoSuchRun(args.only.clone()));
        }
    }
    if let Some(logs) = &args.logs {
        std::fs::create_dir_all(logs).map_err(|source| Error::Logs { path: logs.clone(), source })?;
    }
    termination::catch_termination()?;
    let mode = mode(args)?;
    let work = TempDir::new("dmavm-boot-test")?;
    let mut outcome = execute(args, dmavm, &mode, &specs, work.path());
    drop(work);
    // Ctrl-C reaches the children too (scripts, QEMU, VMs), which may end
    // before the harness notices: whatever they left, it was interrupted.
    if let Some(Interrupted(signal)) = termination::interrupted() {
        outcome = Err(Error::Interrupted(signal));
    }
    let (runs, ready) = outcome?;
    let verdict = if runs.iter().all(RunResult::passed) { Verdict::Passed } else { Verdict::Failed };
    if args.protocol {
        return Ok(verdict);
    }
    let mode_name = match &mode {
        Mode::Direct => "direct",
        Mode::Sandbox { .. } => "sandbox",
    };
    let jobs = if mode_name == "sandbox" { sandbox::SANDBOX_JOBS } else { args.jobs };
    let report = Report::new(
        args.kernel.display().to_string(),
        mode_name,
        jobs,
        t0.elapsed().as_secs_f64(),
        ready,
        runs,
    );
    print!("{}", report::table(&report));
    let _ = std::io::stdout().flush();
    let mut unwritten = Vec::new();
    for (path, text) in [(&args.json, report.json()), (&args.junit, report::junit(&report))] {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                unwritten.push((path.clone(), e));
            }
        }
    }
    if unwritten.is_empty() {
        Ok(verdict)
    } else {
        Err(Error::Reports(unwritten))
    }
}

/// Prepares the initrd and runs the matrix; the results and, in sandbox
/// mode, when the emulated host was ready.
fn execute(
    args: &BootTestArgs,
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
        kernel: args.kernel.clone(),
        initrd,
        kvm_device: args.kvm_device.clone(),
        cmdline,
        timeout: args.timeout,
        jobs: args.jobs,
        logs: args.logs.clone(),
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
            sandbox::run(args, &plan, qemu, specs)
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
