//! The options of `dmavm boot-test`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::shard::Shard;

/// What the kernel log must not hold, as `grep -E` patterns (the guest
/// matches them against its whole kernel log): warnings and bugs with
/// their backtraces, panics, hung tasks, IOMMU faults (virtio-iommu,
/// VT-d, AMD-Vi), VT-d invalidation errors and virtio or block-layer
/// errors.
pub const DEFAULT_FAIL_PATTERNS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "Kernel panic",
    "blocked for more than",
    "fault from EP",
    "(DMAR|AMD-Vi|iommu|IOMMU).*[^A-Za-z][Ff]ault",
    "DMAR.*Invalidation .*Error",
    "virtio.*(error|failed)",
    "I/O error",
];

/// Options of `dmavm boot-test`.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BootTestArgs {
    /// What to do instead of running a matrix.
    #[command(subcommand)]
    pub action: Option<Action>,

    /// The kernel under test (bzImage, or an uncompressed ELF vmlinux with
    /// a PVH entry point).
    // Required, but not with `merge`: clap leaves it out then.
    #[arg(long, value_name = "PATH", required = true)]
    pub kernel: Option<PathBuf>,

    /// An initramfs whose /init runs `/checks/$NAME.sh` for
    /// `dmavm.check=NAME` and ends the VM through the exit device, as
    /// resources/guest/init does (the harness adds its check and the
    /// kernel-log patterns to it). Without --initrd the harness builds a
    /// busybox initramfs around the kernel itself.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// The kernel's modules (its lib/modules/VERSION tree, or any folder of
    /// .ko, .ko.xz, .ko.zst or .ko.gz files) for the initramfs the harness
    /// builds: the virtio transports and drivers and the virtio-iommu that
    /// are not built in. Not with --initrd.
    #[arg(long, value_name = "DIR", conflicts_with = "initrd")]
    pub modules: Option<PathBuf>,

    /// The guests' architecture: x86_64, or aarch64 (arm64: an `Image`,
    /// machines with a device tree, and the `coherency` check). An arm64
    /// matrix runs directly on an arm64 host with KVM, elsewhere in the
    /// project's arm64 sandbox (one emulated arm64 host for the whole
    /// matrix); it needs --initrd (resources/guest/arm64/build-initramfs.sh
    /// builds one): the harness builds x86_64 initramfs images only.
    #[arg(long, value_enum, default_value = "x86_64")]
    pub arch: GuestArch,

    /// The matrix: named machines (the keys of the machine config file)
    /// and kernel command-line variants; repeat to run several.
    #[arg(long, value_name = "FILE", required = true)]
    pub matrix: Vec<PathBuf>,

    /// Only the runs named NAME (`machine/variant`) or of machine NAME;
    /// repeat for more.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,

    /// VMs run at the same time (direct mode; the sandbox runs one).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_jobs)]
    pub jobs: usize,

    /// Time one run may take, from start to power-off (`90s`, `2m`; a bare
    /// number is seconds); a run that has not ended by then is killed and
    /// reported as timed out. A machine's `timeout` in the matrix wins.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra kernel command-line words for every run (before the
    /// machine's and the variant's).
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,

    /// Another `grep -E` pattern the kernel log must not match; repeat for
    /// more (added to the default list below).
    #[arg(long = "fail-pattern", value_name = "REGEX", value_parser = parse_pattern)]
    pub fail_pattern: Vec<String>,

    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write a JSON report to FILE (what `dmavm boot-test merge` reads).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the results to FILE as a KCIDB submission (KernelCI's
    /// common results database, schema 5.3): the kernel as a checkout and
    /// a build of origin `dmavm`, each run and each of its checks as a
    /// test at `dmavm.MACHINE.VARIANT.CHECK`.
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,

    /// Run only shard I of N (1 <= I <= N): the runs whose name hashes to
    /// it, so that N CI jobs with --shard 1/N ... N/N run every run
    /// exactly once whatever the order of the matrix files. `dmavm
    /// boot-test merge` makes their --json reports one.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::parse)]
    pub shard: Option<Shard>,

    /// Keep each run's serial console and dmavm output in DIR/RUN.log
    /// (RUN with '/' as '_'); in sandbox mode also DIR/sandbox.log.
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,

    /// Run the VMs on this machine's /dev/kvm (hardware KVM).
    #[arg(long, conflicts_with = "sandbox")]
    pub direct: bool,

    /// Run the whole matrix inside the project's nested test bed (QEMU
    /// with an emulated SVM CPU, one emulated host for all runs). Chosen
    /// by itself where this machine has no hardware KVM; without --direct
    /// or --sandbox, DMAVM_TESTBED=direct|sandbox chooses as it does for
    /// the test bed's tests.
    #[arg(long)]
    pub sandbox: bool,

    /// The KVM device (direct mode).
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,

    /// Machine-readable progress for an outer harness (sandbox mode runs
    /// `dmavm boot-test --direct --protocol` inside the emulated host).
    #[arg(long, hide = true, requires = "direct")]
    pub protocol: bool,
}

/// A guest architecture, as `--arch` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuestArch {
    /// x86_64 guests (ACPI).
    #[value(name = "x86_64")]
    X86_64,
    /// arm64 guests (device tree).
    #[value(name = "aarch64")]
    Aarch64,
}

impl GuestArch {
    /// The machine model's architecture.
    pub fn arch(self) -> dmavm_machine::Arch {
        match self {
            Self::X86_64 => dmavm_machine::Arch::X86_64,
            Self::Aarch64 => dmavm_machine::Arch::Aarch64,
        }
    }

    /// As reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }
}

/// What `dmavm boot-test` does instead of running a matrix.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Merge the --json reports of the shards of one matrix (--shard 1/N
    /// ... N/N) into one report with the totals of an unsharded run: the
    /// runs in matrix order, the table printed, and --json, --junit and
    /// --kcidb written from it. Refuses reports of other kernels or
    /// shardings, and a missing or repeated shard. Exit status as the
    /// unsharded run's: 0 every run passed, 1 some run failed.
    Merge(MergeArgs),
}

/// Options of `dmavm boot-test merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The --json reports of the shards.
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,

    /// Write the merged JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write the merged JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the merged results to FILE as a KCIDB submission.
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
}

/// The long help after the options; its exit statuses are
/// exit_status.rs's.
pub const AFTER_HELP: &str = "\
The matrix (TOML): named machines under [machine.NAME] with the keys of the \
machine config file (cpus, memory, [[machine.NAME.disk]], [machine.NAME.iommu], \
...) plus `variants = [...]` (which variants to run; default all, [] none), `cmdline` and \
`timeout`; kernel command-line variants under [variants] as NAME = \"words\". A \
disk's image is made by the harness for each run (2 MiB of random bytes), so a \
disk has no `path`; the harness makes a network device's TAP too (see net \
below), so a net device has no `tap`. The runs are the cross product, named MACHINE/VARIANT. \
Example: resources/matrix/default.toml.

Each run boots the kernel with the initramfs and `dmavm.check=boot-test` and \
checks, in this order (the first that fails is reported): \
boot (the kernel reached init), finished (the guest's check ran to its end and \
the VM powered off within the timeout), devices (every virtio device of the \
machine appeared where the machine model puts it, with its driver; every disk, \
RNG and console), iommu-groups (each translated device is in an IOMMU group, \
each bypassing one is not; on a VT-d machine the kernel registered every unit \
and read the DMAR the model declares), access-platform (VIRTIO_F_ACCESS_PLATFORM \
negotiated exactly where the model offers it), dma (each disk read whole and \
checksummed, written and read back with O_DIRECT, read-only disks refuse \
writes, the host's image matches; 64 KiB from every RNG; a line through every \
console), coherency (arm64 only: every disk re-probed and read while kprobes \
count the guest's cache maintenance, arch_sync_dma_for_device/for_cpu, and \
the memory type of its coherent allocations; a non-coherent device must get \
both and non-cacheable memory, a coherent one neither; a mismatch names the \
device), net (machines with network devices only: the harness, as root, makes a \
network namespace of the run's own with a TAP per device, 169.254.(10+i).1/24 for \
the i-th, starts the VM in it and serves a 2 MiB block of random bytes on each; \
the guest brings each link up as 169.254.(10+i).2, pings the peer, fetches the \
block over HTTP and sends it back over TCP; a link passes when it was up, the ping \
answered and both ends' SHA-256 match; without root or the tun driver the run \
cannot start and says why), kernel-log (no line matches a fail pattern), vmm-stats (dmavm's \
--stats: no IOMMU faults, no refused ATTACH unless mixed-coherency=reject, \
no dropped fault reports, no DMA a VT-d unit let through untranslated).

Default fail patterns (grep -E, extended with --fail-pattern): 'WARNING:', \
'BUG:', 'Oops', 'Kernel panic', 'blocked for more than', 'fault from EP', \
'(DMAR|AMD-Vi|iommu|IOMMU).*[^A-Za-z][Ff]ault', 'DMAR.*Invalidation .*Error', \
'virtio.*(error|failed)', 'I/O error'.

Sandbox mode (no hardware KVM here, or --sandbox): the harness builds the \
initramfs here, then boots one emulated host (the project's test bed: QEMU TCG, \
L1 Linux with kvm-amd, build/guest of the checkout dmavm was built from, \
prepared by resources/guest/fetch-kernel.sh) carrying this dmavm, the kernel, \
initramfs and matrix, and runs `dmavm boot-test --direct` there; results come \
back over its serial console. It runs one VM at a time whatever --jobs says \
(with more, the emulated host freezes or its kvm crashes now and then). With \
--arch aarch64 off an arm64 host, the arm64 sandbox plays that part \
(qemu-system-aarch64 TCG at EL2, L1 Linux with KVM in VHE mode, the aarch64 \
dmavm cross-built from the checkout: tests/src/arm64.rs).

Output: a progress line per finished run (runs done / total, failures so far), \
then a table (run, result, seconds, first failing check). With --logs, every \
failed run also leaves DIR/reproduce-RUN.sh (RUN with '/' as '_'), which boots \
exactly that machine and kernel command line with plain `dmavm run` (hardware \
KVM needed), with the initramfs kept beside it as DIR/initrd.img.

A kernel whose virtio drivers are modules needs them in the initramfs: give \
its modules with --modules (the harness says so when the guest lacks a driver).

Sharding and KernelCI: --shard I/N runs a fixed 1/N of the runs (by a hash of \
each run's name); `dmavm boot-test merge --json OUT --junit OUT --kcidb OUT \
SHARD.json...` merges the shards' JSON reports. --kcidb writes a KCIDB \
submission (schema 5.3) for `kcidb-submit`.

Exit status, as `git bisect run` takes it: 0 every run passed, 1 some run \
failed, 125 the kernel could not be tested (the kernel file is missing or \
unreadable, it has none of the virtio drivers the runs need, the initramfs or \
the test bed could not be made, no run could start; bisect skips the commit), \
2 bad matrix or options (fix the command line: bisect takes 2 as a bad \
commit); 130 after Ctrl-C (every VM and temporary file is gone by then; bisect \
stops).";

fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("'{text}': expected from 1 to 64 VMs at a time")),
    }
}

/// A `--fail-pattern`: an extended regular expression as the guest's
/// `grep -E` takes it, checked here with the C library's `regcomp`, which
/// is what `grep -E` compiles it with; a pattern it refuses would make
/// every run fail for a reason that is not the kernel's. One line (the
/// patterns are passed one per line) and not empty (which matches every
/// line).
pub fn parse_pattern(text: &str) -> Result<String, String> {
    let shown = dmavm_machine::user_text::shown(text);
    if text.is_empty() {
        return Err("an empty pattern matches every line of the kernel log".into());
    }
    if text.contains(['\n', '\r', '\0']) {
        return Err(format!("'{shown}': a pattern is one line"));
    }
    let c = std::ffi::CString::new(text).map_err(|_| format!("'{shown}': a pattern is one line"))?;
    // SAFETY: regex_t is plain data that regcomp initialises.
    let mut re: libc::regex_t = unsafe { std::mem::zeroed() };
    // SAFETY: `re` is writable and `c` a NUL-terminated string; both
    // outlive the call.
    let rc = unsafe { libc::regcomp(&mut re, c.as_ptr(), libc::REG_EXTENDED | libc::REG_NOSUB) };
    if rc == 0 {
        // SAFETY: `re` was compiled by the regcomp above and is freed once.
        unsafe { libc::regfree(&mut re) };
        return Ok(text.to_string());
    }
    let mut message = [0 as libc::c_char; 256];
    // SAFETY: regerror writes at most `message.len()` bytes, NUL-terminated,
    // into `message`; `re` is the failed regcomp's, which regerror accepts.
    unsafe { libc::regerror(rc, &re, message.as_mut_ptr(), message.len()) };
    // SAFETY: regerror NUL-terminated what it wrote in `message`.
    let why = unsafe { std::ffi::CStr::from_ptr(message.as_ptr()) }.to_string_lossy().into_owned();
    Err(format!("'{shown}' is not an extended regular expression (grep -E): {why}"))
}

/// `90s`, `2m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a time such as 90s or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("'{text}': expected more than 0 and at most 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "s", "0", "-1s", "3 days", "2x", "25h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_jobs("0").is_err());
        assert_eq!(parse_jobs("2"), Ok(2));
    }

    #[test]
    fn fail_patterns_are_checked_up_front() {
        for p in DEFAULT_FAIL_PATTERNS {
            assert_eq!(parse_pattern(p).as_deref(), Ok(*p));
        }
        let err = parse_pattern("([").unwrap_err();
        assert!(err.starts_with("'([' is not an extended regular expression (grep -E): "), "{err}");
        assert!(parse_pattern("a{2,1}").is_err());
        assert!(parse_pattern("").unwrap_err().contains("empty pattern"));
        assert!(parse_pattern("a\nb").unwrap_err().contains("'a\\nb': a pattern is one line"));
    }

    #[test]
    fn the_help_lists_every_default_pattern() {
        for p in DEFAULT_FAIL_PATTERNS {
            assert!(AFTER_HELP.contains(&format!("'{p}'")), "{p}");
        }
    }
}
