//! The arm64 sandbox: arm64 guests under real KVM on an x86_64 host.
//!
//! `qemu-system-aarch64` in pure emulation (TCG) boots Debian's arm64 cloud
//! kernel (L1) on `-M virt,virtualization=on,gic-version=3 -cpu max`, so the
//! kernel starts at EL2 and its built-in KVM runs in VHE mode; an aarch64 VMM
//! inside L1 (the static aarch64 dmavm, and `kvm-probe`, a tiny C VMM that
//! proves KVM works) runs arm64 guests (L2) under that KVM. Scenarios run in
//! one L1 boot and come back framed on L1's serial console (ttyAMA0), as in
//! the x86 sandbox, with the same [`ScenarioResult`]s (`testbed` is
//! `"arm64-sandbox"`).
//!
//! It is much slower than the x86 sandbox (an L1 boot takes 4-6 s with
//! `pauth-impdef=on`, 12-13 s without; an L2 Linux boot tens of seconds), so
//! keep arm64 scenarios few and batched in one call.
//!
//! Scenarios are `resources/testbed-arm64/scenarios/NAME.sh` and
//! `tests/scenarios/arm64-*.sh`, run inside L1 with `DMAVM=/bin/dmavm`,
//! `GUEST=/guest` (`Image`, `initramfs.cpio.gz`) and `PAYLOADS=/payloads`;
//! `kvm-probe` is on their `PATH`.
//!
//! Preparation (all cached under `build/`): `resources/setup.sh`,
//! `resources/guest/arm64/fetch.sh` (kernel and busybox into
//! `build/guest-arm64/`), `resources/guest/arm64/build-initramfs.sh` (the L2
//! initramfs), `resources/testbed-arm64/build-l1.sh` (the L1 initramfs in
//! `build/testbed-arm64/`). The aarch64 dmavm is cross-built from this tree
//! (`resources/testbed-arm64/build-dmavm.sh`) unless `DMAVM_AARCH64` names one.
//! A run listing one of [`POOL_KERNEL_SCENARIOS`] also builds the guest
//! kernel that bounces through restricted DMA pools
//! (`resources/guest/arm64/build-pool-kernel.sh`, into
//! `build/guest-arm64-pool/`), which L1 then carries as `/guest/pool/Image`.
//!
//! Environment knobs: `DMAVM_AARCH64=PATH` (the aarch64 dmavm binary to
//! carry instead), `DMAVM_ARM64_SMP=N` (L1 vCPUs,
//! default 2), `DMAVM_SCENARIO_TIMEOUT=SECS` (per-scenario limit inside L1,
//! default 300 here).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::build_lock::BuildLock;
use crate::command::{run_checked, status_text, tail};
use crate::error::{Error, Result};
use crate::frames::{self, Frame};
use crate::log::RunLog;
use crate::paths::Paths;
use crate::prepare::{install_packages, script};
use crate::run::{cached, pick, RunCache};
use crate::sandbox::{boot_l1, L1Session};
use crate::scenario::{ScenarioResult, STATUS_UNFINISHED};

/// The QEMU binary the arm64 sandbox needs (Debian's `qemu-system-arm`).
pub const QEMU_AARCH64: &str = "qemu-system-aarch64";
/// The Rust target of the aarch64 dmavm.
pub const AARCH64_TARGET: &str = "aarch64-unknown-linux-gnu";
/// L1's machine: EL2 (`virtualization=on`) needs GICv3 for KVM's vGIC.
pub const QEMU_MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// L1's CPU: `max` has EL2 and FEAT_VHE; `pauth-impdef=on` swaps the costly
/// emulation of the QARMA pointer-authentication cipher for a cheap
/// implementation-defined one (L1 boots 2-3x faster, exits cost half).
pub const QEMU_CPU: &str = "max,pauth-impdef=on";
/// `ScenarioResult::testbed` of scenarios run here.
pub const TESTBED: &str = "arm64-sandbox";
/// L1 vCPUs when `DMAVM_ARM64_SMP` is not set.
pub const DEFAULT_SMP: u32 = 2;
/// Per-scenario limit inside L1 when `DMAVM_SCENARIO_TIMEOUT` is not set.
pub const DEFAULT_SCENARIO_TIMEOUT_SECS: u64 = 300;
/// Host seconds allowed for L1 to boot and power off, on top of the
/// scenarios' own limits.
const BOOT_ALLOWANCE_SECS: u64 = 240;
/// Extra host seconds per scenario on top of its limit inside L1.
const PER_SCENARIO_SLACK_SECS: u64 = 15;
/// Log lines kept in messages about a run that went wrong.
const TAIL_LINES: usize = 40;
/// The scenarios that boot `$GUEST/pool/Image`: Debian's arm64 kernels never
/// bounce through a restricted DMA pool (`CONFIG_DMA_RESTRICTED_POOL` unset),
/// so these need the kernel `build-pool-kernel.sh` makes, which is built
/// (or taken from its cache) only for a run that lists one of them.
pub const POOL_KERNEL_SCENARIOS: &[&str] = &["arm64-dma-pool", "arm64-bench-pool"];

/// A run's outcome as kept in the cache (errors shared between callers).
type Cached<T> = std::result::Result<T, Arc<Error>>;

/// The arm64 sandbox, ready to run: a working `qemu-system-aarch64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm64Sandbox {
    /// The `qemu-system-aarch64` that boots L1.
    pub qemu: PathBuf,
}

impl fmt::Display for Arm64Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arm64 sandbox (arm64 L1 Linux under {} TCG, -M {QEMU_MACHINE}, KVM in VHE mode)",
            self.qemu.display()
        )
    }
}

impl Arm64Sandbox {
    /// Finds `qemu-system-aarch64` in `PATH` and checks it runs; without it
    /// this is an error, never a silent skip.
    pub fn detect() -> Result<Self> {
        let Some(qemu) = find_in_path(QEMU_AARCH64) else {
            return Err(Error::NoTestbed(format!(
                "the arm64 sandbox needs {QEMU_AARCH64}, which is not installed \
                 (run resources/setup.sh: qemu-system-arm)"
            )));
        };
        let out = Command::new(&qemu).arg("--version").stdin(Stdio::null()).output().map_err(|e| {
            Error::NoTestbed(format!("the arm64 sandbox's {} cannot run: {e}", qemu.display()))
        })?;
        if !out.status.success() {
            return Err(Error::NoTestbed(format!(
                "`{} --version` failed ({}): {}",
                qemu.display(),
                status_text(out.status),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Arm64Sandbox { qemu })
    }

    /// Runs the scenarios in one arm64 L1 boot, uncached: validates the
    /// names, installs missing packages and prepares the images (once per
    /// process), boots L1 and collects every scenario's result. An L1 that
    /// never reaches its init, or has no `/dev/kvm`, is an error
    /// ([`Error::NoTestbed`]) carrying the tail of its log.
    pub fn run(&self, names: &[&str]) -> Result<Vec<ScenarioResult>> {
        let paths = Paths::new();
        let names = validate(&paths, names)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        static RUN_LOCK: Mutex<()> = Mutex::new(());
        let _serial = RUN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let dmavm = prepared(&paths)?;
        let pool = names.iter().any(|n| POOL_KERNEL_SCENARIOS.contains(&n.as_str()));
        if pool {
            pool_kernel_built(&paths)?;
        }
        let image = build_l1(&paths, &dmavm, pool)?;
        boot(&paths, &self.qemu, &image, &names, scenario_timeout())
    }
}

/// The per-scenario limit inside L1: `DMAVM_SCENARIO_TIMEOUT` or 300 s.
pub fn scenario_timeout() -> u64 {
    std::env::var("DMAVM_SCENARIO_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SCENARIO_TIMEOUT_SECS)
}

/// `build/guest-arm64/`: the arm64 kernel (`Image`, `config`, modules),
/// busybox and the L2 initramfs.
pub fn guest_dir(paths: &Paths) -> PathBuf {
    paths.build().join("guest-arm64")
}

/// `build/testbed-arm64/`: the L1 initramfs, kvm-probe and the run logs.
pub fn testbed_dir(paths: &Paths) -> PathBuf {
    paths.build().join("testbed-arm64")
}

/// `resources/testbed-arm64/`: the sandbox's scripts and own scenarios.
fn resources_dir(paths: &Paths) -> PathBuf {
    paths.resources().join("testbed-arm64")
}

/// Everything an arm64 L1 boots with, prepared as the scenarios' runs
/// prepare it (once per process): the L1 initramfs, which carries the
/// aarch64 dmavm of this tree as `/bin/dmavm`. Its path.
pub fn prepare_l1(paths: &Paths) -> Result<PathBuf> {
    let dmavm = prepared(paths)?;
    build_l1(paths, &dmavm, false)
}

/// The arguments of `qemu-system-aarch64` that boot an arm64 L1: `kernel`
/// with `initrd` and `append` on `smp` vCPUs, serial console on stdio.
pub fn l1_qemu_args(kernel: &Path, initrd: &Path, append: &str, smp: u32, memory_mib: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["-accel", "tcg", "-M", QEMU_MACHINE, "-cpu", QEMU_CPU, "-m"].iter().map(Into::into).collect();
    args.push(format!("{memory_mib}M").into());
    args.push("-smp".into());
    args.push(smp.to_string().into());
    for a in
        ["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel"]
    {
        args.push(a.into());
    }
    args.push(kernel.into());
    args.push("-initrd".into());
    args.push(initrd.into());
    args.push("-append".into());
    args.push(append.into());
    args
}

/// L1 vCPUs: `DMAVM_ARM64_SMP` (1 to 8) or [`DEFAULT_SMP`].
pub fn smp() -> u32 {
    std::env::var("DMAVM_ARM64_SMP")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| (1..=8).contains(&n))
        .unwrap_or(DEFAULT_SMP)
}

/// Cross-builds the static aarch64 dmavm
/// (`resources/testbed-arm64/build-dmavm.sh`) and returns its path.
pub fn build_aarch64_dmavm(paths: &Paths) -> Result<PathBuf> {
    let mut cmd = Command::new("bash");
    cmd.current_dir(&paths.root).arg(resources_dir(paths).join("build-dmavm.sh"));
    let out = run_checked(&mut cmd)?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The script of arm64 scenario `name`: `resources/testbed-arm64/scenarios/
/// NAME.sh`, else `tests/scenarios/NAME.sh` for names starting `arm64-`
/// (the ones the L1 image carries).
pub fn scenario_script(paths: &Paths, name: &str) -> Option<PathBuf> {
    let own = resources_dir(paths).join("scenarios").join(format!("{name}.sh"));
    if own.is_file() {
        return Some(own);
    }
    let shared = paths.scenario(name);
    (name.starts_with("arm64-") && shared.is_file()).then_some(shared)
}

/// Checks every name is a plain file stem with an arm64 scenario script.
fn validate(paths: &Paths, names: &[&str]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|&name| {
            let plain =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err(Error::BadScenarioName(name.to_string()));
            }
            match scenario_script(paths, name) {
                Some(_) => Ok(name.to_string()),
                None => Err(Error::NoSuchScenario {
                    name: name.to_string(),
                    path: resources_dir(paths).join("scenarios").join(format!("{name}.sh")),
                }),
            }
        })
        .collect()
}

/// Packages, arm64 guest images and the aarch64 dmavm, once per process:
/// the dmavm's path.
fn prepared(paths: &Paths) -> Result<PathBuf> {
    static PREPARED: OnceLock<Cached<PathBuf>> = OnceLock::new();
    PREPARED.get_or_init(|| prepare(paths).map_err(Arc::new)).clone().map_err(Error::Shared)
}

/// The pool kernel in `build/guest-arm64-pool/`, once per process.
fn pool_kernel_built(paths: &Paths) -> Result<()> {
    static BUILT: OnceLock<Cached<()>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let build = paths.resources().join("guest").join("arm64").join("build-pool-kernel.sh");
            BuildLock::acquire(paths).and_then(|_lock| script(paths, build, &[])).map_err(Arc::new)
        })
        .clone()
        .map_err(Error::Shared)
}

/// The L1 image with `dmavm`, and the pool kernel when `pool` (a no-op when
/// nothing changed since the last build of the same contents): its path.
/// The two kinds are two files, so that test binaries running at the same
/// time never rebuild the image another is about to boot.
fn build_l1(paths: &Paths, dmavm: &Path, pool: bool) -> Result<PathBuf> {
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    let image = if pool {
        args.push("--pool-kernel".as_ref());
        "l1-pool.cpio"
    } else {
        "l1.cpio"
    };
    args.push(dmavm.as_os_str());
    let _lock = BuildLock::acquire(paths)?;
    script(paths, resources_dir(paths).join("build-l1.sh"), &args)?;
    Ok(testbed_dir(paths).join(image))
}

/// Installs missing packages, fetches and builds what L2 boots with and the
/// aarch64 dmavm L1 carries; returns the dmavm's path.
fn prepare(paths: &Paths) -> Result<PathBuf> {
    install_packages(paths)?;
    let _lock = BuildLock::acquire(paths)?;
    let guest = paths.resources().join("guest").join("arm64");
    script(paths, guest.join("fetch.sh"), &[])?;
    script(paths, guest.join("build-initramfs.sh"), &[])?;
    // The tests must run what the tree holds, like the x86 static build:
    // cross-build unless the caller names a binary (cargo makes an
    // up-to-date build a no-op).
    let dmavm = match std::env::var_os("DMAVM_AARCH64") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => build_aarch64_dmavm(paths)?,
    };
    if !dmavm.is_file() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        return Err(Error::io(format!("the aarch64 dmavm {}", dmavm.display()), e));
    }
    Ok(dmavm)
}

/// Boots L1 from `image` with `names` (validated) and reads their results.
fn boot(
    paths: &Paths,
    qemu: &Path,
    image: &Path,
    names: &[String],
    timeout: u64,
) -> Result<Vec<ScenarioResult>> {
    let smp = smp();
    let overall = BOOT_ALLOWANCE_SECS + names.len() as u64 * (timeout + PER_SCENARIO_SLACK_SECS);
    let append =
        format!("console=ttyAMA0 panic=-1 quiet dmavm.scenarios={} dmavm.timeout={timeout}", names.join(","));
    let mut log = RunLog::create(&testbed_dir(paths).join("logs"), "arm64")?;
    // coreutils timeout bounds the whole run even if L1 hangs
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &overall.to_string()])
        .arg(qemu)
        .args(l1_qemu_args(&guest_dir(paths).join("Image"), image, &append, smp, 2048))
        .current_dir(&paths.root);
    // The arm64 L1 boots slower than a scenario may stay silent: silence
    // counts from the boot allowance up.
    let silence = std::time::Duration::from_secs(BOOT_ALLOWANCE_SECS.max(timeout + PER_SCENARIO_SLACK_SECS));
    let L1Session { lines, summary, qemu_err, .. } =
        boot_l1(&mut cmd, &mut log, "arm64 sandbox", overall, silence)?;
    let log_tail = || {
        let mut t =
            format!("last lines of {}:\n{}", log.path().display(), tail(&lines.join("\n"), TAIL_LINES));
        if !qemu_err.trim().is_empty() {
            t.push_str(&format!("\nQEMU's stderr:\n{}", tail(&qemu_err, 10)));
        }
        t
    };
    // fail loudly when L1 never got going or has no KVM
    if let Err(why) = check_ready(&lines) {
        return Err(Error::NoTestbed(format!("{why} ({summary}); {}", log_tail())));
    }

    let frames = frames::parse(lines.iter().map(String::as_str));
    Ok(names
        .iter()
        .map(|name| {
            let frame = frames.iter().rev().find(|f| &f.name == name);
            let mut r = result(name, frame, &|| {
                format!("dmavm-tests: this scenario never finished ({summary}); {}", log_tail())
            });
            r.log = Some(log.path().to_path_buf());
            r
        })
        .collect())
}

/// `Ok` when L1's log says it reached its init with `/dev/kvm`, else why not.
fn check_ready(lines: &[String]) -> std::result::Result<(), String> {
    let error = lines.iter().find_map(|l| frames::after(l, frames::ERROR)).map(str::trim);
    match lines.iter().find_map(|l| frames::after(l, frames::READY)) {
        None => Err(format!(
            "the arm64 L1 never reached its init{}",
            error.map(|e| format!(": {e}")).unwrap_or_default()
        )),
        Some(r) if !r.split_whitespace().any(|w| w == "kvm=1") => {
            Err(format!("no /dev/kvm in the arm64 L1: {}", error.unwrap_or("(no reason given)")))
        }
        Some(_) => Ok(()),
    }
}

/// The result for `name` from its frame, if it has a complete one; else an
/// unfinished result carrying what it printed and the log's tail.
fn result(name: &str, frame: Option<&Frame>, context: &dyn Fn() -> String) -> ScenarioResult {
    let mut output = frame.map(|f| f.output.clone()).unwrap_or_default();
    let (status, secs) = match frame.and_then(|f| f.end) {
        Some(end) => end,
        None => {
            output.extend(context().lines().map(str::to_string));
            (STATUS_UNFINISHED, 0.0)
        }
    };
    ScenarioResult { name: name.to_string(), status, output, secs, log: None, testbed: TESTBED }
}

/// [`Arm64Sandbox::detect`] then [`Arm64Sandbox::run`], without the cache.
/// Installs missing packages first (a fresh machine gets QEMU before
/// detection).
pub fn run_scenarios_uncached(names: &[&str]) -> Result<Vec<ScenarioResult>> {
    install_packages(&Paths::new())?;
    Arm64Sandbox::detect()?.run(names)
}

/// Runs the arm64 scenarios, at most once per process for a given list:
/// later calls with the same list wait for and share the first call's
/// results (so the tests of one test binary share one L1 boot when they all
/// pass the same list; see [`run_scenario`]).
pub fn run_scenarios(names: &[&str]) -> Result<Vec<ScenarioResult>> {
    static CACHE: RunCache = OnceLock::new();
    cached(&CACHE, names, run_scenarios_uncached)
}

/// The result of arm64 scenario `name` from the (cached) run of the whole
/// list `all`, which must contain it.
pub fn run_scenario(all: &[&str], name: &str) -> Result<ScenarioResult> {
    pick(all, name, run_scenarios)
}

/// The first executable file called `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_shared_scenarios_are_found() {
        let paths = Paths::new();
        assert!(scenario_script(&paths, "arm64-kvm").is_some());
        // x86 scenarios are not carried by the arm64 L1
        assert!(scenario_script(&paths, "testbed-selftest").is_none());
        assert!(matches!(validate(&paths, &["no/such"]), Err(Error::BadScenarioName(_))));
        assert!(matches!(validate(&paths, &["testbed-selftest"]), Err(Error::NoSuchScenario { .. })));
    }

    #[test]
    fn pool_kernel_scenarios_boot_the_pool_kernel() {
        let paths = Paths::new();
        for name in POOL_KERNEL_SCENARIOS {
            let text = scenario_script(&paths, name)
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            assert!(text.contains("$GUEST/pool/Image"), "{name}: no script, or it boots another kernel");
        }
    }

    #[test]
    fn ready_needs_kvm() {
        let lines = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
        assert!(check_ready(&lines("boot\n@@DMAVM-SANDBOX-READY init=2.1 kvm=1 mode=vhe")).is_ok());
        let no_kvm = check_ready(&lines(
            "@@DMAVM-SANDBOX-ERROR no /dev/kvm: kvm [1]: HYP mode not available\n\
             @@DMAVM-SANDBOX-READY init=2.1 kvm=0 mode=none",
        ));
        assert!(no_kvm.as_ref().is_err_and(|e| e.contains("HYP mode not available")), "{no_kvm:?}");
        assert!(check_ready(&lines("[ 1.0] Kernel panic")).is_err());
    }

    #[test]
    fn unfinished_result_carries_context() {
        let r = result("a", None, &|| "x\ny".to_string());
        assert_eq!(r.status, STATUS_UNFINISHED);
        assert_eq!(r.output, vec!["x", "y"]);
        assert_eq!(r.testbed, TESTBED);
    }
}
