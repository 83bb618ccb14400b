//! Running scenarios in the nested sandbox: QEMU TCG boots the guest kernel
//! as L1 with an emulated SVM CPU and `build/testbed/l1.cpio` as initramfs;
//! L1 loads kvm-amd and runs the scenarios, framing their output on its
//! serial console (see `frames`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::build_lock::BuildLock;
use crate::command::{describe, status_text, tail};
use crate::error::{Error, Result};
use crate::frames::{self, Frame};
use crate::l1_monitor::{L1Monitor, SILENCE_CHECK_PERIOD};
use crate::log::RunLog;
use crate::paths::Paths;
use crate::prepare::{script, Artefacts};
use crate::scenario::{ScenarioResult, STATUS_UNFINISHED};
use crate::scenario_header;

/// Host seconds allowed for L1 to boot and power off, on top of the
/// scenarios' own limits.
const BOOT_ALLOWANCE_SECS: u64 = 180;
/// Extra host seconds per scenario on top of its limit inside L1.
const PER_SCENARIO_SLACK_SECS: u64 = 15;
/// RAM of L1, in MiB: what the L2 guests of all scenarios share, less what
/// L1 itself holds (its kernel, and the initramfs with dmavm and the guest
/// images, in RAM); a scenario must check a guest size it is given fits.
const L1_MEMORY_MIB: u64 = 2048;
/// Log lines appended to the output of a scenario that never finished.
const TAIL_LINES: usize = 40;

/// Builds the sandbox image and runs `names` (already validated) in one L1
/// boot, each with `timeout` seconds inside L1 and `vars` (already
/// validated: single words without '=' in their values) in its environment.
///
/// An emulated host that stops answering (see [`boot_l1`]: a lost wakeup,
/// or no serial output for longer than a scenario may take) is stopped,
/// and the scenarios it left unfinished run again in a fresh one, up to
/// [`FRESH_L1_RETRIES`] times: QEMU's TCG occasionally loses a wakeup of
/// L1's vCPU for good (see [`crate::l1_monitor`]), which says nothing
/// about dmavm. A scenario whose dmavm or guest hangs is not retried: L1
/// stops it at its limit and reports it, and a host that freezes on every
/// try is reported as it is.
pub(crate) fn run(
    paths: &Paths,
    qemu: &Path,
    art: &Artefacts,
    names: &[String],
    vars: &[(String, String)],
    timeout: u64,
) -> Result<Vec<ScenarioResult>> {
    {
        let _lock = BuildLock::acquire(paths)?;
        script(
            paths,
            paths.resources().join("testbed").join("build-l1.sh"),
            &[art.dmavm.as_os_str(), art.payloads.as_os_str()],
        )?;
    }
    let (mut results, mut froze) = run_in_one_l1(paths, qemu, art, names, vars, timeout)?;
    for _ in 0..FRESH_L1_RETRIES {
        let unfinished: Vec<String> =
            results.iter().filter(|r| r.status == STATUS_UNFINISHED).map(|r| r.name.clone()).collect();
        if !froze || unfinished.is_empty() {
            break;
        }
        eprintln!(
            "dmavm-tests: the emulated host stopped answering; running {} again in a fresh one",
            unfinished.join(", ")
        );
        let again;
        (again, froze) = run_in_one_l1(paths, qemu, art, &unfinished, vars, timeout)?;
        for r in again {
            if let Some(slot) = results.iter_mut().find(|old| old.name == r.name) {
                *slot = r;
            }
        }
    }
    Ok(results)
}

/// Fresh L1 boots for the scenarios a frozen one left unfinished.
const FRESH_L1_RETRIES: usize = 4;

/// One L1 boot running `names`: their results, and whether L1 stopped
/// answering.
fn run_in_one_l1(
    paths: &Paths,
    qemu: &Path,
    art: &Artefacts,
    names: &[String],
    vars: &[(String, String)],
    timeout: u64,
) -> Result<(Vec<ScenarioResult>, bool)> {
    let overall = BOOT_ALLOWANCE_SECS + names.len() as u64 * (timeout + PER_SCENARIO_SLACK_SECS);
    let mut append =
        format!("console=ttyS0 panic=-1 quiet dmavm.scenarios={} dmavm.timeout={timeout}", names.join(","));
    for (name, value) in vars {
        append.push_str(&format!(" dmavm.env.{name}={value}"));
    }
    let mut log = RunLog::create(&paths.logs(), "sandbox")?;
    // coreutils timeout bounds the whole run even if L1 hangs
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &overall.to_string()])
        .arg(qemu)
        .args(l1_qemu_args(
            &art.guest.join("vmlinuz"),
            &paths.l1_cpio(),
            &append,
            l1_cpus(paths, names),
            L1_MEMORY_MIB,
        ))
        .current_dir(&paths.root);
    let silence = Duration::from_secs(BOOT_ALLOWANCE_SECS.max(timeout + PER_SCENARIO_SLACK_SECS));
    let L1Session { lines, summary, qemu_err, froze } =
        boot_l1(&mut cmd, &mut log, "sandbox", overall, silence)?;
    let frames = frames::parse(lines.iter().map(String::as_str));
    let sandbox_error = lines
        .iter()
        .find_map(|l| frames::after(l, frames::ERROR))
        .map(|e| format!("dmavm-tests: the sandbox reported an error:{e}"));
    let context = || {
        let mut ctx: Vec<String> = sandbox_error.iter().cloned().collect();
        ctx.push(format!(
            "dmavm-tests: this scenario never finished ({summary}); last lines of {}:",
            log.path().display()
        ));
        ctx.extend(tail(&lines.join("\n"), TAIL_LINES).lines().map(str::to_string));
        if !qemu_err.trim().is_empty() {
            ctx.push("dmavm-tests: QEMU's stderr:".to_string());
            ctx.extend(tail(&qemu_err, 10).lines().map(str::to_string));
        }
        ctx
    };
    let results = names
        .iter()
        .map(|name| result(name, frames.iter().rev().find(|f| &f.name == name), &context))
        .map(|mut r| {
            r.log = Some(log.path().to_path_buf());
            r
        })
        .collect();
    Ok((results, froze))
}

/// What one L1 boot printed.
pub(crate) struct L1Session {
    /// Its serial console, line by line.
    pub(crate) lines: Vec<String>,
    /// When L1 got ready and finished, and how QEMU ended, for messages.
    pub(crate) summary: String,
    /// QEMU's own stderr.
    pub(crate) qemu_err: String,
    /// Whether L1 stopped answering and was stopped.
    pub(crate) froze: bool,
}

/// Runs `cmd`, a QEMU (under `timeout`, `overall` seconds) booting an L1
/// whose serial console is its stdout, logging every line to `log` and
/// timing the `frames::READY` and `frames::DONE` markers; `label` names
/// the sandbox in messages. L1 is taken for frozen and stopped, rather than
/// left to the overall limit, when QEMU's monitor (asked every
/// [`SILENCE_CHECK_PERIOD`] of silence) shows a vCPU waiting on a wakeup QEMU
/// lost (see [`crate::l1_monitor`]), or when it has been silent for
/// `silence`; the monitor's account of its vCPUs goes into the log first.
/// Shared by the x86_64 and arm64 sandboxes.
pub(crate) fn boot_l1(
    cmd: &mut Command,
    log: &mut RunLog,
    label: &str,
    overall: u64,
    silence: Duration,
) -> Result<L1Session> {
    let stderr_path = log.path().with_extension("qemu-stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| Error::io(format!("creating {}", stderr_path.display()), e))?;
    let stem = log.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let monitor = L1Monitor::new(&stem);
    cmd.args(monitor.qemu_args());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    log.line(&format!("# {}", describe(cmd)))?;
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting `{}`", describe(cmd)), e))?;

    let mut lines = Vec::new();
    let (mut t_ready, mut t_done) = (None, None);
    // why L1 was stopped, if it was
    let mut stopped: Option<String> = None;
    if let Some(out) = child.stdout.take() {
        // The serial output is read on a thread of its own so that silence
        // can be timed here.
        let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let mut last_output = Instant::now();
        loop {
            let wait = if stopped.is_some() { silence } else { SILENCE_CHECK_PERIOD.min(silence) };
            let buf = match rx.recv_timeout(wait) {
                Ok(read) => read.map_err(|e| Error::io(format!("reading the {label}'s serial output"), e))?,
                Err(RecvTimeoutError::Timeout) if stopped.is_none() => {
                    let lost = monitor.lost_wakeups(Duration::from_secs(1));
                    let why = if let Some(w) = lost.first() {
                        w.to_string()
                    } else if last_output.elapsed() >= silence {
                        format!("no output for {}s: L1 looks frozen", silence.as_secs())
                    } else {
                        continue;
                    };
                    log.line(&format!("# {why}; stopping it"))?;
                    for line in monitor.account() {
                        log.line(&line)?;
                    }
                    // coreutils `timeout` passes SIGTERM on to the QEMU it
                    // runs (SIGKILL would stop `timeout` alone and leave
                    // QEMU holding the serial pipe open).
                    if let Ok(pid) = i32::try_from(child.id()) {
                        // SAFETY: kill(2) takes plain integers; `pid` is our
                        // own child, not yet reaped (wait() comes below).
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                    }
                    stopped = Some(why);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            last_output = Instant::now();
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
            log.line(&line)?;
            if t_ready.is_none() && line.contains(frames::READY) {
                t_ready = Some(log.elapsed());
            }
            if line.contains(frames::DONE) {
                t_done = Some(log.elapsed());
            }
            lines.push(line);
        }
    }
    let status = child.wait().map_err(|e| Error::io(format!("waiting for the {label}'s QEMU"), e))?;
    let total = log.elapsed();
    let fmt_t = |t: Option<f64>| t.map_or("never".to_string(), |t| format!("{t:.2}s"));
    let summary = format!(
        "{label}: L1 ready {}, done {}, QEMU ended after {total:.2}s with {}{}",
        fmt_t(t_ready),
        fmt_t(t_done),
        status_text(status),
        if let Some(why) = &stopped {
            format!(" (stopped: {why})")
        } else if status.code() == Some(124) {
            format!(" (time limit {overall}s)")
        } else {
            String::new()
        },
    );
    log.line(&format!("# {summary}"))?;
    log.flush()?;
    eprintln!("dmavm-tests: {summary}; log {}", log.path().display());
    let qemu_err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(L1Session { lines, summary, qemu_err, froze: stopped.is_some() })
}

/// Most vCPUs L1 gets.
const MAX_L1_CPUS: u64 = 8;

/// L1's vCPUs for a run of `names`: `DMAVM_L1_CPUS` (1 to 8) if set, else
/// the most any of them declares (`# l1-cpus: N`, see
/// [`crate::scenario_header`]), else 1. The network benchmark asks for
/// two: L1's TCP stack and servers answer the guest beside running it.
fn l1_cpus(paths: &Paths, names: &[String]) -> usize {
    let forced = std::env::var("DMAVM_L1_CPUS").ok().and_then(|v| v.trim().parse().ok());
    let cpus = forced
        .filter(|n| (1..=MAX_L1_CPUS).contains(n))
        .or_else(|| scenario_header::most_declared(paths, names, "l1-cpus", 1..=MAX_L1_CPUS))
        .unwrap_or(1);
    usize::try_from(cpus).unwrap_or(1)
}

/// The arguments of `qemu-system-x86_64` that boot L1: `kernel` (the
/// test bed's, whose kvm-amd the image loads) with `initrd` (an image of
/// `resources/testbed/build-l1.sh`) and `append`, under TCG on an AMD CPU
/// model with SVM, `cpus` vCPUs (more than one: multi-threaded TCG, so
/// that L2 guests run in parallel) and `memory_mib` of RAM; the serial
/// console on stdout.
pub fn l1_qemu_args(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    cpus: usize,
    memory_mib: u64,
) -> Vec<std::ffi::OsString> {
    let accel = if cpus > 1 { "tcg,thread=multi" } else { "tcg" };
    let (memory, cpus) = (format!("{memory_mib}M"), cpus.to_string());
    let mut args: Vec<std::ffi::OsString> = [
        "-accel",
        accel,
        "-M",
        "q35",
        "-cpu",
        "max",
        "-m",
        &memory,
        "-smp",
        &cpus,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(kernel.into());
    args.push("-initrd".into());
    args.push(initrd.into());
    args.push("-append".into());
    args.push(append.into());
    args
}

/// The result for `name` from its frame, if it has a complete one; else an
/// unfinished result carrying what it printed and the log's tail.
fn result(name: &str, frame: Option<&Frame>, context: &dyn Fn() -> Vec<String>) -> ScenarioResult {
    let mut output = frame.map(|f| f.output.clone()).unwrap_or_default();
    let (status, secs) = match frame.and_then(|f| f.end) {
        Some(end) => end,
        None => {
            output.extend(context());
            (STATUS_UNFINISHED, 0.0)
        }
    };
    ScenarioResult { name: name.to_string(), status, output, secs, log: None, testbed: "sandbox" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A stand-in for QEMU under `timeout`: prints `lines`, then either
    /// exits or goes silent for a minute.
    fn fake_l1(lines: &str, hang: bool) -> Command {
        let mut cmd = Command::new("timeout");
        let script = format!("printf '{lines}'; {}", if hang { "sleep 60" } else { "true" });
        cmd.args(["-k", "5", "120", "sh", "-c", &script]);
        cmd
    }

    fn log_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dmavm-tests-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_silent_l1_is_stopped_as_frozen() {
        let mut log = RunLog::create(&log_dir("frozen"), "sandbox").unwrap();
        let start = Instant::now();
        let s = boot_l1(
            &mut fake_l1("@@DMAVM-SANDBOX-READY\\n", true),
            &mut log,
            "test",
            120,
            Duration::from_secs(2),
        )
        .unwrap();
        assert!(s.froze, "{}", s.summary);
        assert!(start.elapsed() < Duration::from_secs(30), "stopped after {:?}", start.elapsed());
        assert!(s.summary.contains("(stopped: no output for 2s: L1 looks frozen)"), "{}", s.summary);
        assert_eq!(s.lines, ["@@DMAVM-SANDBOX-READY"]);
    }

    /// A stand-in for QEMU whose monitor (on the socket its `-monitor`
    /// argument names) shows a one-vCPU L1 halted with the timer's
    /// interrupt pending, as a QEMU that lost the wakeup does.
    const LOST_WAKEUP_QEMU: &str = r#"
import socket, sys
path = sys.argv[sys.argv.index("-monitor") + 1].split(",")[0][len("unix:"):]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen()
print("@@DMAVM-SANDBOX-READY", flush=True)
answers = {
    "info cpus": "* CPU #0: thread_id=1\r\n",
    "info registers -a": "CPU#0\r\nRIP=ffffffffa7c95fef RFL=00000206 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n",
    "info lapic 0": "IRR\t 236 \r\nAPR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10\r\n",
}
while True:
    conn, _ = srv.accept()
    conn.sendall(b"QEMU monitor\r\n(qemu) ")
    pending = b""
    while True:
        data = conn.recv(4096)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            cmd = line.decode().strip()
            conn.sendall((answers.get(cmd, "") + "(qemu) ").encode())
"#;

    #[test]
    fn an_l1_that_lost_a_wakeup_is_stopped_at_once() {
        let dir = log_dir("lost-wakeup");
        let script = dir.join("qemu.py");
        std::fs::write(&script, LOST_WAKEUP_QEMU).unwrap();
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "120", "python3"]).arg(&script);
        let mut log = RunLog::create(&dir, "sandbox").unwrap();
        let start = Instant::now();
        // silence allowed far longer than the test may take
        let s = boot_l1(&mut cmd, &mut log, "test", 120, Duration::from_secs(100)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(60), "stopped after {:?}", start.elapsed());
        assert!(s.froze, "{}", s.summary);
        assert!(
            s.summary.contains("vCPU 0 of L1 stays halted with vector 236 pending in its local APIC"),
            "{}",
            s.summary
        );
        let logged = std::fs::read_to_string(log.path()).unwrap();
        assert!(logged.contains("#   > info lapic"), "{logged}");
    }

    #[test]
    fn an_l1_that_talks_and_ends_is_not_frozen() {
        let mut log = RunLog::create(&log_dir("ends"), "sandbox").unwrap();
        let s =
            boot_l1(&mut fake_l1("a\\nb\\n", false), &mut log, "test", 120, Duration::from_secs(5)).unwrap();
        assert!(!s.froze, "{}", s.summary);
        assert_eq!(s.lines, ["a", "b"]);
    }
}
