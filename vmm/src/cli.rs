//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use dmavm_machine::options::{
    parse_bridge, parse_console, parse_cpus, parse_disk, parse_iommu, parse_net, parse_rng, BridgeOptions,
    DeviceOptions, IommuOptions, MachineOptions,
};
use dmavm_machine::size::parse_size;

/// dmavm: a minimal KVM virtual machine monitor that declares every device's
/// true DMA coherency and IOMMU scope.
#[derive(Debug, Parser)]
#[command(name = "dmavm", version, propagate_version = true)]
#[command(
    after_help = "Exit status of `run`: 0 when the guest powers off or a --api-socket client sends quit, N when the guest \
writes N to I/O port 0xf4 (the exit device), 3 when the guest resets, 1 when dmavm or the guest \
fails (one line on stderr says why), 2 for a command-line error, 128+S after signal S, 159 \
(128 + SIGSYS) when a thread makes a system call its seccomp filter forbids."
)]
pub struct Cli {
    /// What to log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn, value_name = "LEVEL")]
    pub log_level: LogLevel,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a virtual machine and run it until the guest stops.
    ///
    /// The guest's COM1 serial port is connected to this terminal (raw mode
    /// while a terminal is attached). Give either a kernel or a payload, on
    /// the command line or in a --config file.
    ///
    /// Before the VM starts, dmavm checks the machine against the DMA
    /// contract. An error (code DMA0xx: e.g. a PCI device asking for another
    /// coherency than its host bridge declares, two devices in one slot)
    /// stops it with one `dmavm: error: [CODE] ...` line and status 1,
    /// before KVM is opened. A warning (DMA1xx: e.g. a device declared
    /// coherent=off, which dmavm cannot honour) is printed as
    /// `dmavm: warning: [CODE] ...` and the VM runs. `dmavm explain CODE`
    /// says why a rule matters and how to fix a machine that breaks it.
    ///
    /// Example: dmavm run --config resources/machines/mixed.toml --cpus 4
    /// (the file's machine with 4 vCPUs).
    Run(RunArgs),

    /// Print the machine's devices and what the firmware tables declare
    /// about each (coherency, IOMMU scope, ACCESS_PLATFORM), without KVM.
    ///
    /// Takes the machine options of `run` and builds the same machine
    /// model, so a configuration `run` rejects fails here with the same
    /// error. One row per device, the IOMMU and the PCI host bridges
    /// included: where it sits, its interrupt, its DMA properties, and the
    /// ACPI objects (--arch x86_64) or device tree nodes (--arch aarch64)
    /// that declare them. docs/coherency.md explains every column.
    Describe(DescribeArgs),

    /// Explain a configuration check's code (DMA001, ...): what the rule
    /// is, why it matters to a guest, and how to fix a machine that breaks
    /// it. Without a code, list every code with its one-line summary.
    ///
    /// `run` and `describe` check every machine: an error (DMA0xx) stops
    /// `run` before the VM starts, a warning (DMA1xx) is printed and the
    /// VM runs. Each message starts with its code, e.g.
    /// `dmavm: error: [DMA002] disk0: coherent=off conflicts with ...`.
    Explain(ExplainArgs),

    /// Boot a kernel on every machine of a matrix and check that each
    /// guest sees what the machine model declares (devices, IOMMU groups,
    /// ACCESS_PLATFORM, working DMA, a clean kernel log, no IOMMU faults).
    ///
    /// The matrix lists named machines (the keys of the machine config
    /// file) and kernel command-line variants; the runs are their cross
    /// product, --jobs at a time, each killed at its --timeout. Without
    /// hardware KVM here the whole matrix runs in the project's nested test
    /// bed (sandbox mode, said so in the output); --arch aarch64 runs arm64
    /// machines (in the arm64 sandbox elsewhere than on an arm64 host) and
    /// adds the coherency check. Prints a line per finished run and a final
    /// table; --junit, --json and --kcidb write reports, --logs keeps each
    /// run's serial log and a reproduce script per failed run; --shard and
    /// `dmavm boot-test merge` split a matrix over CI jobs. Exit status as
    /// `git bisect run` reads it (0 good, 1 bad, 125 untestable).
    // Without the `boot-test` feature the subcommand does not exist, so
    // clap answers `dmavm boot-test` as any unknown subcommand.
    #[cfg(feature = "boot-test")]
    BootTest(dmavm_boot_test::BootTestArgs),

    /// Send a request to a running VM's control socket (`run
    /// --api-socket PATH`) and print the reply's value as JSON (with
    /// --count, every reply).
    ///
    /// A request the VM refuses prints `dmavm: error: [CODE] MESSAGE` and
    /// exits with status 1, as does a socket nobody answers on.
    /// docs/control-socket.md describes every command and reply.
    Ctl(CtlArgs),
}

/// Options of `dmavm ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The VM's control socket (the PATH of its `run --api-socket`).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// Send the request N times on one connection, printing every reply
    /// (0: until the VM goes away or an error reply); the first error
    /// reply ends it. `--count 0 --interval 1 stats` watches the counters.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u64,

    /// Seconds between repeated requests (decimals allowed; default 0: each
    /// as soon as the previous reply arrived).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_interval)]
    pub interval: std::time::Duration,

    /// The request.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The requests of `dmavm ctl`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The machine as `describe --format json` shows it, and whether the
    /// VM runs or is paused.
    Info,
    /// The IOMMU counters of every endpoint (those of `run --stats`), as
    /// they are now.
    Stats,
    /// Plug a device into a hotplug=on host bridge of a running x86_64
    /// VM: TYPE is disk, rng or console, KEYS what its --disk, --rng or
    /// --console option takes (transport=pci,bridge=NAME included). The
    /// machine's checks apply as at boot; the guest is told through the
    /// ACPI hot-plug controller and probes the device itself. A console
    /// (one per machine) takes dmavm's terminal from the UART until it
    /// leaves. Prints its id, PCI address and whether the IOMMU translates
    /// it.
    AddDevice {
        /// disk, rng or console.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The device's keys.
        #[arg(value_name = "KEYS")]
        options: Option<String>,
    },
    /// Remove a disk, rng or console from a hotplug=on host bridge: the guest is
    /// asked to eject it, and the reply comes once it did (at most 10 s;
    /// then the error eject-timeout, and the device stays).
    RemoveDevice {
        /// The device's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Stop every vCPU; the reply comes once none runs guest code.
    Pause,
    /// Let the vCPUs of a paused VM run again.
    Resume,
    /// Ask the guest to power off (the ACPI power button).
    Shutdown,
    /// End the VM at once (exit status 0), as SIGTERM would but with
    /// status 0.
    Quit,
}

/// Options of `dmavm explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The code to explain (case does not matter); all codes when left out.
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
}

/// Options of `dmavm run`.
#[derive(Debug, Args)]
// The kernel of --initrd and --cmdline may come from the --config file.
#[command(group(clap::ArgGroup::new("kernel_source").args(["kernel", "config"]).multiple(true)))]
pub struct RunArgs {
    /// Linux kernel to boot (bzImage, or an uncompressed ELF vmlinux with a
    /// PVH entry point).
    #[arg(long, value_name = "PATH", required_unless_present_any = ["payload", "config"])]
    pub kernel: Option<PathBuf>,

    /// Initial ramdisk handed to the kernel.
    #[arg(long, value_name = "PATH", requires = "kernel_source")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STR", requires = "kernel_source")]
    pub cmdline: Option<String>,

    /// A flat 64-bit test payload instead of a kernel: loaded at 0x100000 and
    /// entered in long mode by every vCPU, with the first 4 GiB identity
    /// mapped, interrupts off, rdi = vCPU index, rsi = vCPU count and a
    /// 1 KiB stack per vCPU below 0x80000. It ends the VM by writing a
    /// status byte to port 0xf4. See resources/payloads/README.md.
    #[arg(long, value_name = "FILE", conflicts_with = "kernel")]
    pub payload: Option<PathBuf>,

    /// vCPUs, memory, devices and their DMA properties.
    #[command(flatten)]
    pub machine: MachineArgs,

    /// The KVM device to use.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,

    /// Also write each ACPI table the guest gets as `DIR/<SIG>.dat` (for
    /// `iasl -d`), then run the VM.
    #[arg(long, value_name = "DIR")]
    pub dump_acpi: Option<PathBuf>,

    /// Print per-endpoint IOMMU counters (MAP/UNMAP requests, translations,
    /// IOTLB misses, faults, refused ATTACHes) on stderr when the VM stops.
    #[arg(long)]
    pub stats: bool,

    /// Test only (arm64): declare the virtio-mmio device ID in the device
    /// tree with the opposite of its coherency (`dma-coherent` where it is
    /// not coherent and the reverse) while it keeps behaving as the machine
    /// says, so that a test can prove the guest's coherency is checked.
    /// Repeat for more devices.
    #[arg(long, value_name = "ID", hide = true)]
    pub test_dt_flip_coherent: Vec<String>,

    /// Limit each thread to the system calls its work needs, so that a
    /// guest that subverts a device model through a bug gains nothing more.
    ///
    /// The vCPU threads may enter the guest and make the few KVM ioctls
    /// their exits need (interrupt routes, ioeventfds of moved BARs); the
    /// main thread may wait for events, read and write the open disk
    /// images, eventfds and the console, and stop the vCPUs. Neither may
    /// open a file or a socket, start a program or map executable memory.
    /// `--log-level info` names each filter as its thread installs it;
    /// docs/security.md lists what each thread may do and why.
    #[arg(long, value_enum, default_value_t = crate::seccomp::Mode::On, value_name = "MODE")]
    pub seccomp: crate::seccomp::Mode,

    /// Answer requests on a UNIX socket at PATH (JSON, one request per
    /// line; `dmavm ctl --socket PATH` is its client): info, stats,
    /// pause, resume, quit, shutdown, add-device, remove-device.
    ///
    /// The socket is created with mode 0600 (its owner only). An existing
    /// socket nothing listens on is replaced; any other file at PATH, or
    /// a socket in use, is an error. The socket file stays when the VM
    /// ends (the main thread's seccomp filter does not allow removing
    /// files) and is replaced by the next run. docs/control-socket.md
    /// describes the requests and replies.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
}

/// The machine: vCPUs, memory, devices and PCI host bridges. `run` and
/// `describe` both flatten this one struct, so that they take exactly the
/// same options and can never drift apart.
#[derive(Debug, Args)]
pub struct MachineArgs {
    /// The machine from a TOML file; the options given on the command line
    /// go over it.
    ///
    /// Every option has a file form with the same keys: top-level cpus,
    /// memory, kernel, initrd and cmdline, one [[disk]], [[net]], [[rng]]
    /// or [[pci-bridge]] table per device or bridge, one [console] and one
    /// [iommu] table; on/off values may be TOML booleans, slot and addr
    /// integers. Relative paths are relative to the file. Examples are in
    /// resources/machines/.
    ///
    /// Over the file: --cpus, --memory, --kernel, --initrd, --cmdline,
    /// --console and --iommu replace its value (--payload its kernel,
    /// initrd and cmdline); --disk, --net, --rng and --pci-bridge are added after
    /// its devices, but one with the id= of a device of the file replaces
    /// that device whole.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u32,

    /// Guest memory: a number with K, M, G or T (binary units); a bare
    /// number is MiB.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    pub memory: u64,

    /// A virtio-blk disk backed by a raw file; repeat for more disks.
    ///
    /// Keys: path=FILE (required), readonly=on|off (default off),
    /// transport=mmio|pci (default mmio), bridge=NAME (PCI only: the host
    /// bridge, default pci0), coherent=on|off (the DMA coherency declared
    /// as _CCA; default on, on PCI the bridge's, which is the only value
    /// allowed there), direct-ram-access=on|off (off: offer
    /// VIRTIO_F_ACCESS_PLATFORM and go through the IOMMU when there is one;
    /// on: bypass it, guest-physical addresses; default off, on PCI the
    /// bridge's), id=NAME (default diskN; the disk's serial), slot=N (PCI
    /// only: device number 1-31 on its bridge; default the first free),
    /// addr=A (virtio-mmio only: the register window, 0xd0000000 +
    /// N * 0x1000 for N 0-18; default the first free), dma-pool=SIZE
    /// (arm64: confine the device's DMA to a restricted DMA pool of SIZE,
    /// a multiple of 256K up to 1G, declared in the device tree as a
    /// restricted-dma-pool with memory-region on the device: the guest
    /// bounces every buffer through it, the device reaches nothing else,
    /// VIRTIO_F_ACCESS_PLATFORM offered and required; the device is outside
    /// the IOMMU's scope; default none, on PCI the bridge's). rng and
    /// console take the same keys but path and readonly.
    #[arg(long, value_name = "KEYS", value_parser = parse_disk)]
    pub disk: Vec<DeviceOptions>,

    /// A virtio-net device on an existing TAP interface; repeat for more.
    ///
    /// The host makes the TAP and connects it (addresses, a bridge, a
    /// namespace), as for any VMM: for example `ip tuntap add dev tap0 mode
    /// tap user $USER` and `ip link set tap0 up`; dmavm attaches to it and
    /// moves frames, with checksum and TCP segmentation offloads passed
    /// through.
    ///
    /// Keys: tap=NAME (required: the interface), mac=MAC (aa:bb:cc:dd:ee:ff;
    /// default a locally administered address derived from the id, the
    /// same on every run), transport=mmio|pci, bridge=NAME,
    /// coherent=on|off, direct-ram-access=on|off, id=NAME (default netN),
    /// slot=N, addr=A, dma-pool=SIZE, as for --disk.
    ///
    /// Example: --iommu --net tap=tap0,transport=pci (translated through
    /// the virtio-iommu: every receive and transmit buffer is an IOVA).
    #[arg(long, value_name = "KEYS", value_parser = parse_net)]
    pub net: Vec<DeviceOptions>,

    /// A PCI host bridge on a PCI segment of its own: a DMA domain for
    /// the PCI devices put on it with bridge=NAME. Repeat for more (16 in
    /// all).
    ///
    /// The guest sees each bridge as an ACPI PNP0A08 root with its own ECAM
    /// (an MCFG entry), BAR windows and _CCA, and names its devices
    /// 000S:00:DD.0 (S = segment). pci0 is the bridge on segment 0 that
    /// every machine has (id=pci0,... sets its keys); other names get
    /// segments 1, 2, ... in command-line order.
    ///
    /// Keys: id=NAME (required). coherent=on|off (default on): the _CCA of
    /// the root, which is the coherency of every device on it (a device
    /// asking for another value is an error). direct-ram-access=on|off
    /// (default off): on puts the whole bridge outside the IOMMU's scope
    /// (no VIOT range, no DMAR unit for its segment) and its devices
    /// inherit it (asking for off there is an error); a bridge with off may
    /// still hold single devices with direct-ram-access=on. hotplug=on|off (default off;
    /// x86_64): its slots take and give up disks, rngs and the console while the VM
    /// runs (`dmavm ctl add-device`/`remove-device`, with --api-socket); a
    /// translated hot-pluggable bridge is in the IOMMU's scope whole,
    /// every slot, so a device bypassing it there is an error. dma-pool=SIZE (arm64; default none): one restricted DMA
    /// pool, memory-region on the bridge node, for every function below it
    /// without a dma-pool of its own.
    ///
    /// Example: --iommu --pci-bridge id=fast,direct-ram-access=on --disk
    /// path=a.img,transport=pci,bridge=fast (segment 0 translated, the disk
    /// at 0001:00:01.0 bypassing the IOMMU).
    #[arg(long = "pci-bridge", value_name = "KEYS", value_parser = parse_bridge)]
    pub pci_bridge: Vec<BridgeOptions>,

    /// An IOMMU that translates the DMA of every device with
    /// direct-ram-access=off; the devices with on bypass it. One per
    /// machine, of one type.
    ///
    /// type=virtio (the default): a virtio-iommu (virtio device 23),
    /// declared in the ACPI VIOT (x86_64) or the device tree (aarch64); it
    /// is never in its own scope. The guest needs its virtio-iommu driver
    /// (Linux CONFIG_VIRTIO_IOMMU, which some distribution kernels lack).
    /// Keys: transport=pci|mmio (default pci), bridge=NAME (default pci0),
    /// id=NAME (default iommu0), slot=N or addr=A as for --disk,
    /// mixed-coherency=allow|reject (default allow; reject: an ATTACH that
    /// would put a coherent and a non-coherent device in one translated
    /// domain is refused with S_UNSUPP, so the guest keeps them apart; allow
    /// with translated devices of both coherencies is warned about,
    /// DMA103), boot-bypass=on|off (default off): whether a device the
    /// guest's driver has not attached to a domain reaches memory
    /// untranslated. Off keeps the contract that a translated device
    /// reaches memory only through translation: a guest without a
    /// virtio-iommu driver never attaches its devices, which then fault
    /// and hang, and dmavm says so once in its log. on lets such a guest
    /// boot (as QEMU's default does), its devices using guest-physical
    /// addresses until a driver attaches them; type=vtd gives it an IOMMU
    /// it has a driver for instead. direct-ram-access=off would put the
    /// IOMMU in its own scope and is refused (DMA004).
    ///
    /// type=vtd (x86_64 only, DMA006): Intel VT-d, which every x86
    /// distribution kernel drives (boot it with intel_iommu=on unless its
    /// kernel turns VT-d on by default). One remapping unit per PCI segment
    /// with translated functions, declared in the ACPI DMAR with exactly
    /// those functions in its device scope (a translated hotplug=on bridge:
    /// its whole segment); register windows from 0xfed90000, one page each,
    /// no PCI slot taken. Only PCI devices can be translated: a translated
    /// virtio-mmio device is refused (DMA007; use transport=pci or
    /// direct-ram-access=on). Keys: coherent=on|off (default on), the
    /// units' page-walk coherency (ECAP.C): off makes the guest flush CPU
    /// caches after each page-table update (warned about, DMA106: only for
    /// testing that path). The virtio-iommu's keys are refused with
    /// type=vtd, and coherent with type=virtio.
    ///
    /// Example: --iommu type=vtd --disk path=a.img,transport=pci --rng
    /// transport=pci,direct-ram-access=on (the disk behind VT-d unit dmar0,
    /// the RNG in no scope).
    #[arg(long, value_name = "KEYS", num_args = 0..=1, default_missing_value = "", value_parser = parse_iommu)]
    pub iommu: Option<IommuOptions>,

    /// A virtio-rng device fed by the host's getrandom(2); repeat for more.
    ///
    /// Keys: transport=mmio|pci, bridge=NAME, coherent=on|off,
    /// direct-ram-access=on|off, id=NAME (default rngN), slot=N, addr=A,
    /// dma-pool=SIZE, as for --disk.
    #[arg(long, value_name = "KEYS", num_args = 0..=1, default_missing_value = "", value_parser = parse_rng)]
    pub rng: Vec<DeviceOptions>,

    /// A virtio-console (hvc0 in the guest) on this terminal, next to the
    /// UART; when present it receives the terminal's input (boot the guest
    /// with console=hvc0).
    ///
    /// Keys: transport=mmio|pci, bridge=NAME, coherent=on|off,
    /// direct-ram-access=on|off, id=NAME (default console0), slot=N,
    /// addr=A, dma-pool=SIZE, as for --disk.
    #[arg(long, value_name = "KEYS", num_args = 0..=1, default_missing_value = "", value_parser = parse_console)]
    pub console: Option<DeviceOptions>,
}

impl MachineArgs {
    /// The machine model's options.
    pub fn options(&self) -> MachineOptions {
        MachineOptions {
            cpus: self.cpus,
            memory: self.memory,
            bridges: self.pci_bridge.clone(),
            devices: self
                .disk
                .iter()
                .chain(&self.net)
                .chain(&self.rng)
                .chain(&self.console)
                .cloned()
                .collect(),
            iommu: self.iommu.clone(),
        }
    }
}

/// Options of `dmavm describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The Linux kernel `run` would boot. Not read: accepted so that a
    /// `run` command line can be described as it is.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Initial ramdisk. Only its size is read: with --arch aarch64 it
    /// places the initrd in the device tree's /chosen.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line: `bootargs` in the device tree's /chosen.
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,

    /// The devices and their DMA properties, as for `run`.
    #[command(flatten)]
    pub machine: MachineArgs,

    /// The guest architecture whose firmware to describe: x86_64 (ACPI:
    /// DSDT `_CCA`, VIOT) or aarch64 (device tree: `dma-coherent`,
    /// `iommus`, `iommu-map`). Default: the one dmavm was built for.
    #[arg(long, value_enum, default_value_t = Arch::HOST, value_name = "ARCH")]
    pub arch: Arch,

    /// Output: an aligned table for people, or JSON for tools (the same
    /// rows, with typed values).
    #[arg(long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub format: Format,

    /// Also write each ACPI table as `DIR/<SIG>.dat` (for `iasl -d`);
    /// --arch x86_64 only.
    #[arg(long, value_name = "DIR")]
    pub dump_acpi: Option<PathBuf>,

    /// Also write the device tree blob to FILE (for `dtc -I dtb`);
    /// --arch aarch64 only.
    #[arg(long, value_name = "FILE")]
    pub dtb: Option<PathBuf>,

    /// Also write the device tree as source (DTS) to FILE; --arch aarch64
    /// only.
    #[arg(long, value_name = "FILE")]
    pub dts: Option<PathBuf>,
}

/// A guest architecture, as `--arch` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// ACPI tables.
    #[value(name = "x86_64")]
    X86_64,
    /// A device tree.
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The architecture dmavm was built for.
    pub const HOST: Arch = if cfg!(target_arch = "aarch64") { Arch::Aarch64 } else { Arch::X86_64 };
}

impl From<Arch> for dmavm_machine::Arch {
    fn from(a: Arch) -> Self {
        match a {
            Arch::X86_64 => dmavm_machine::Arch::X86_64,
            Arch::Aarch64 => dmavm_machine::Arch::Aarch64,
        }
    }
}

/// How `describe` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object.
    Json,
}

impl From<Format> for dmavm_machine::describe::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => dmavm_machine::describe::Format::Table,
            Format::Json => dmavm_machine::describe::Format::Json,
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Nothing but the final error line.
    Off,
    /// Failures.
    Error,
    /// Also suspicious guest behaviour (unhandled MMIO, ...).
    Warn,
    /// Also the VM's set-up.
    Info,
    /// Also every unusual exit, with registers.
    Debug,
    /// Everything.
    Trace,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// `--interval`: seconds, 0 to one day.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text}: an interval is 0 to 86400 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ctl_intervals_are_seconds_up_to_a_day() {
        assert_eq!(parse_interval("0.25"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(parse_interval("0"), Ok(std::time::Duration::ZERO));
        for bad in ["-1", "86401", "NaN", "inf", "1s", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_run() {
        let cli =
            Cli::try_parse_from(["dmavm", "run", "--payload", "p.bin", "--cpus", "2", "--memory", "64M"])
                .unwrap();
        let Command::Run(r) = cli.command else { panic!("not run") };
        assert_eq!(r.machine.cpus, 2);
        assert_eq!(r.machine.memory, 64 << 20);
    }

    #[test]
    fn parses_bridges() {
        let cli = Cli::try_parse_from([
            "dmavm",
            "run",
            "--payload",
            "p",
            "--pci-bridge",
            "id=fast,direct-ram-access=on",
            "--pci-bridge",
            "id=pci0,coherent=off",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else { panic!("not run") };
        let ids: Vec<&str> = r.machine.pci_bridge.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["fast", "pci0"]);
        assert!(
            Cli::try_parse_from(["dmavm", "run", "--payload", "p", "--pci-bridge", "coherent=off"]).is_err()
        );
    }

    /// The `dmavm run` options the boot-test harness writes for a run
    /// rebuild, through this command line, the machine it derived its
    /// expectations from.
    #[cfg(feature = "boot-test")]
    #[test]
    fn the_boot_test_options_rebuild_the_same_machine() {
        use dmavm_machine::options::{parse_bridge, parse_console, parse_disk, parse_iommu, parse_rng};
        use dmavm_machine::test_utils::new_machine;
        use dmavm_machine::{Arch, Machine};

        fn rebuilt(args: &[String]) -> Machine {
            let mut argv = vec!["dmavm".to_string(), "run".into(), "--payload".into(), "p".into()];
            argv.extend(args.iter().cloned());
            let cli = Cli::try_parse_from(&argv).unwrap();
            let Command::Run(r) = cli.command else { panic!("not run") };
            Machine::new(&r.machine.options(), Arch::X86_64).unwrap()
        }

        let bridges = [
            parse_bridge("id=fast,direct-ram-access=on").unwrap(),
            parse_bridge("id=slow,coherent=off").unwrap(),
        ];
        let disks = [
            parse_disk("path=/a.img,transport=pci").unwrap(),
            parse_disk("path=/b.img,transport=pci,bridge=fast").unwrap(),
            parse_disk("path=/c.img,readonly=on,direct-ram-access=on").unwrap(),
            parse_disk("path=/d.img,transport=pci,bridge=slow,id=data").unwrap(),
        ];
        let rngs = [parse_rng("transport=pci").unwrap()];
        let console = parse_console("").unwrap();
        let iommu = parse_iommu("mixed-coherency=reject,boot-bypass=on").unwrap();
        let m = new_machine(&bridges, &disks, &rngs, Some(&console), Some(&iommu)).unwrap();
        assert!(m.boot_bypass);
        let args = dmavm_boot_test::machine_args(&m, 2, 256 << 20);
        assert_eq!(rebuilt(&args), Machine { cpus: 2, memory: 256 << 20, ..m });
        let vtd =
            new_machine(&bridges, &disks, &rngs, None, Some(&parse_iommu("type=vtd,coherent=off").unwrap()))
                .unwrap();
        assert_eq!(vtd.vtd_units().len(), 2);
        let args = dmavm_boot_test::machine_args(&vtd, 1, 64 << 20);
        assert_eq!(rebuilt(&args), Machine { memory: 64 << 20, ..vtd });
        // Restricted DMA pools (placed from the size of RAM, which stays
        // the same): a device's own, a bridge's, and one that wins over it.
        let bridges = [parse_bridge("id=bounce,dma-pool=4M").unwrap()];
        let disks = [
            parse_disk("path=/a.img,dma-pool=1M").unwrap(),
            parse_disk("path=/b.img,transport=pci,bridge=bounce").unwrap(),
            parse_disk("path=/c.img,transport=pci,bridge=bounce,dma-pool=2M").unwrap(),
        ];
        let pools = new_machine(&bridges, &disks, &[], None, Some(&iommu)).unwrap();
        let args = dmavm_boot_test::machine_args(&pools, 1, pools.memory);
        assert_eq!(rebuilt(&args), pools);
        let plain = new_machine(&[], &[], &[], None, None).unwrap();
        let args = dmavm_boot_test::machine_args(&plain, 1, 64 << 20);
        assert_eq!(rebuilt(&args), Machine { memory: 64 << 20, ..plain });
    }

    /// `boot-test` needs --kernel and --matrix to run a matrix, and
    /// neither to merge reports; `--shard` takes I/N.
    #[cfg(feature = "boot-test")]
    #[test]
    fn parses_boot_test_and_merge() {
        let cli = Cli::try_parse_from([
            "dmavm",
            "boot-test",
            "--kernel",
            "k",
            "--matrix",
            "m.toml",
            "--shard",
            "2/3",
            "--kcidb",
            "o.json",
        ])
        .unwrap();
        let Command::BootTest(b) = cli.command else { panic!("not boot-test") };
        assert_eq!(b.shard.map(|s| (s.index, s.count)), Some((2, 3)));
        assert_eq!(b.kcidb.as_deref(), Some(std::path::Path::new("o.json")));
        assert!(b.action.is_none());
        let cli =
            Cli::try_parse_from(["dmavm", "boot-test", "merge", "--json", "all.json", "a.json", "b.json"])
                .unwrap();
        let Command::BootTest(b) = cli.command else { panic!("not boot-test") };
        let Some(dmavm_boot_test::Action::Merge(m)) = b.action else { panic!("not merge") };
        assert_eq!(m.reports.len(), 2);
        for args in [
            &["dmavm", "boot-test", "--matrix", "m.toml"][..],
            &["dmavm", "boot-test", "--kernel", "k"],
            &["dmavm", "boot-test", "--kernel", "k", "--matrix", "m", "--shard", "4/3"],
            &["dmavm", "boot-test", "merge"],
            &["dmavm", "boot-test", "--kernel", "k", "--matrix", "m", "merge", "a.json"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        for args in [
            &["dmavm", "run", "--payload", "p", "--cpus", "0"][..],
            &["dmavm", "run", "--payload", "p", "--memory", "lots"],
            &["dmavm", "run"],
            &["dmavm", "run", "--payload", "p", "--kernel", "k"],
            &["dmavm", "run", "--payload", "p", "--bogus"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
