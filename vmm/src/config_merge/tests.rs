//! Every option has a file form that builds the same machine; the merge
//! rules; one-line errors with file, line and key; the examples in
//! resources/machines/ build with the warnings they announce only.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::*;
use dmavm_machine::checks::{check_with, Code, Firmware};
use dmavm_machine::config_file::parse;
use dmavm_machine::options::DeviceOptions;
use dmavm_machine::options::{ATTACH_KEYS, BRIDGE_KEYS, DISK_KEYS, IOMMU_KEYS, NET_KEYS};
use dmavm_machine::{Arch, DeviceKind, Machine};

use crate::cli::{Cli, RunArgs};

/// A scratch folder of this test process.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmavm-config-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(name: &str, text: &str) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `dmavm run ARGS` parsed, its config file applied.
fn run_args(args: &[&str]) -> Result<RunArgs, ConfigError> {
    let line = ["dmavm", "run", "--kvm-device", "/nonexistent"].iter().chain(args);
    let (mut cli, matches) = parse_args(line).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    apply(&mut cli.command, &matches)?;
    match cli.command {
        Command::Run(r) => Ok(r),
        other => panic!("{other:?}"),
    }
}

/// A disk's image and whether it is read-only.
fn disk_file(d: &DeviceOptions) -> (&Path, bool) {
    match &d.kind {
        DeviceKind::Disk { path, readonly } => (path.as_path(), *readonly),
        other => panic!("not a disk: {other:?}"),
    }
}

/// What `run` would build from `args`: everything that reaches the VM.
#[derive(Debug, PartialEq)]
struct Built {
    cpus: u32,
    memory: u64,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    payload: Option<PathBuf>,
    machine: Machine,
}

fn build(r: RunArgs) -> Built {
    let m = &r.machine;
    let machine = Machine::new(&m.options(), Arch::X86_64).unwrap_or_else(|e| panic!("{e:#}"));
    Built {
        cpus: m.cpus,
        memory: m.memory,
        kernel: r.kernel,
        initrd: r.initrd,
        cmdline: r.cmdline,
        payload: r.payload,
        machine,
    }
}

/// (command-line arguments, the same in a config file). Paths are
/// absolute so that both forms name the same file.
const EVERY_KEY: &[(&[&str], &str)] = &[
    (&["--cpus", "3"], "cpus = 3"),
    (&["--cpus", "3"], "cpus = \"3\""),
    (&["--memory", "2G"], "memory = \"2G\""),
    (&["--memory", "768"], "memory = 768"),
    (&["--kernel", "/k/vmlinuz"], "kernel = \"/k/vmlinuz\""),
    (&["--kernel", "/k/vmlinuz", "--initrd", "/k/initrd"], "kernel = \"/k/vmlinuz\"\ninitrd = \"/k/initrd\""),
    (&["--kernel", "/k/vmlinuz", "--cmdline", "console=ttyS0 a=b,c"], "kernel = \"/k/vmlinuz\"\ncmdline = \"console=ttyS0 a=b,c\""),
    (&["--disk", "path=/d/a.img"], "[[disk]]\npath = \"/d/a.img\""),
    (&["--disk", "path=/d/a.img,readonly=on"], "[[disk]]\npath = \"/d/a.img\"\nreadonly = true"),
    (&["--disk", "path=/d/a.img,readonly=off"], "[[disk]]\npath = \"/d/a.img\"\nreadonly = \"off\""),
    (&["--disk", "path=/d/a.img,id=data"], "[[disk]]\npath = \"/d/a.img\"\nid = \"data\""),
    (&["--disk", "path=/d/a.img,transport=pci"], "[[disk]]\npath = \"/d/a.img\"\ntransport = \"pci\""),
    (&["--disk", "path=/d/a.img,coherent=off"], "[[disk]]\npath = \"/d/a.img\"\ncoherent = false"),
    (&["--disk", "path=/d/a.img,direct-ram-access=on"], "[[disk]]\npath = \"/d/a.img\"\ndirect-ram-access = true"),
    (&["--disk", "path=/d/a.img,dma-pool=4M"], "[[disk]]\npath = \"/d/a.img\"\ndma-pool = \"4M\""),
    (&["--rng", "dma-pool=1M"], "[[rng]]\ndma-pool = \"1M\""),
    (&["--console", "dma-pool=256K"], "[console]\ndma-pool = \"256K\""),
    (&["--pci-bridge", "id=b,dma-pool=8M"], "[[pci-bridge]]\nid = \"b\"\ndma-pool = \"8M\""),
    (
        &["--pci-bridge", "id=b", "--disk", "path=/d/a.img,transport=pci,bridge=b"],
        "[[pci-bridge]]\nid = \"b\"\n[[disk]]\npath = \"/d/a.img\"\ntransport = \"pci\"\nbridge = \"b\"",
    ),
    (&["--disk", "path=/d/a.img,transport=pci,slot=7"], "[[disk]]\npath = \"/d/a.img\"\ntransport = \"pci\"\nslot = 7"),
    (&["--disk", "path=/d/a.img,addr=0xd0003000"], "[[disk]]\npath = \"/d/a.img\"\naddr = 0xd0003000"),
    (&["--disk", "path=/d/a.img", "--disk", "path=/d/b.img"], "[[disk]]\npath = \"/d/a.img\"\n[[disk]]\npath = \"/d/b.img\""),
    (&["--net", "tap=tap0"], "[[net]]\ntap = \"tap0\""),
    (&["--net", "tap=tap0,dma-pool=2M"], "[[net]]\ntap = \"tap0\"\ndma-pool = \"2M\""),
    (
        &["--net", "tap=tap1,mac=02:00:00:00:00:01,id=up,transport=pci,coherent=on,direct-ram-access=off,slot=5"],
        "[[net]]\ntap = \"tap1\"\nmac = \"02:00:00:00:00:01\"\nid = \"up\"\ntransport = \"pci\"\ncoherent = true\ndirect-ram-access = false\nslot = 5",
    ),
    (&["--pci-bridge", "id=b", "--net", "tap=t,transport=pci,bridge=b"], "[[pci-bridge]]\nid = \"b\"\n[[net]]\ntap = \"t\"\ntransport = \"pci\"\nbridge = \"b\""),
    (&["--net", "tap=t,addr=0xd0004000"], "[[net]]\ntap = \"t\"\naddr = 0xd0004000"),
    (&["--rng"], "[[rng]]"),
    (
        &["--rng", "id=r,transport=pci,coherent=on,direct-ram-access=on,slot=4"],
        "[[rng]]\nid = \"r\"\ntransport = \"pci\"\ncoherent = true\ndirect-ram-access = true\nslot = 4",
    ),
    (&["--pci-bridge", "id=b", "--rng", "transport=pci,bridge=b"], "[[pci-bridge]]\nid = \"b\"\n[[rng]]\ntransport = \"pci\"\nbridge = \"b\""),
    (&["--rng", "addr=0xd0001000"], "[[rng]]\naddr = 0xd0001000"),
    (&["--console"], "[console]"),
    (
        &["--console", "id=c,transport=mmio,coherent=off,direct-ram-access=on,addr=0xd0002000"],
        "[console]\nid = \"c\"\ntransport = \"mmio\"\ncoherent = \"off\"\ndirect-ram-access = \"on\"\naddr = 0xd0002000",
    ),
    (&["--pci-bridge", "id=b", "--console", "transport=pci,bridge=b,slot=9"], "[[pci-bridge]]\nid = \"b\"\n[console]\ntransport = \"pci\"\nbridge = \"b\"\nslot = 9"),
    (&["--iommu"], "[iommu]"),
    (&["--iommu", "id=vi,transport=mmio,addr=0xd0004000"], "[iommu]\nid = \"vi\"\ntransport = \"mmio\"\naddr = 0xd0004000"),
    (
        &["--pci-bridge", "id=b", "--iommu", "transport=pci,bridge=b,slot=5,mixed-coherency=reject,direct-ram-access=on"],
        "[[pci-bridge]]\nid = \"b\"\n[iommu]\ntransport = \"pci\"\nbridge = \"b\"\nslot = 5\nmixed-coherency = \"reject\"\ndirect-ram-access = true",
    ),
    (&["--iommu", "type=virtio"], "[iommu]\ntype = \"virtio\""),
    (&["--iommu", "boot-bypass=on"], "[iommu]\nboot-bypass = true"),
    (&["--iommu", "type=vtd"], "[iommu]\ntype = \"vtd\""),
    (&["--iommu", "type=vtd,coherent=off"], "[iommu]\ntype = \"vtd\"\ncoherent = false"),
    // Kept expressible for DMA004, which refuses it after the model is built.
    (&["--iommu", "direct-ram-access=off"], "[iommu]\ndirect-ram-access = false"),
    (&["--pci-bridge", "id=b"], "[[pci-bridge]]\nid = \"b\""),
    (
        &["--pci-bridge", "id=b,coherent=off,direct-ram-access=on,hotplug=on"],
        "[[pci-bridge]]\nid = \"b\"\ncoherent = false\ndirect-ram-access = true\nhotplug = true",
    ),
    (&["--pci-bridge", "id=pci0,coherent=off"], "[[pci-bridge]]\nid = \"pci0\"\ncoherent = false"),
];

#[test]
fn every_option_key_parses_from_the_file_into_the_same_machine() {
    for (i, (cli, toml)) in EVERY_KEY.iter().enumerate() {
        // A machine boots something: a payload unless the row is about the kernel.
        let boot: &[&str] = if cli.contains(&"--kernel") { &[] } else { &["--payload", "/p.bin"] };
        let from_cli: Vec<&str> = boot.iter().chain(cli.iter()).copied().collect();
        let file = write(&format!("every-key-{i}.toml"), toml);
        let from_file: Vec<&str> = boot.iter().copied().chain(["--config", file.to_str().unwrap()]).collect();
        let a = build(run_args(&from_cli).unwrap());
        let b = build(run_args(&from_file).unwrap_or_else(|e| panic!("{toml}: {e}")));
        assert_eq!(a, b, "{cli:?} against\n{toml}");
    }
}

#[test]
fn the_key_table_covers_every_option_and_key() {
    // Every long option of `run` that describes the machine...
    let run_only = [
        "payload",
        "kvm-device",
        "dump-acpi",
        "stats",
        "test-dt-flip-coherent",
        "seccomp",
        "api-socket",
        "config",
        "log-level",
        "help",
        "version",
    ];
    let cmd = Cli::command();
    let run = cmd.find_subcommand("run").unwrap();
    let options: Vec<String> = run
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !run_only.contains(l))
        .map(|l| format!("--{l}"))
        .collect();
    let used: Vec<&str> = EVERY_KEY.iter().flat_map(|(cli, _)| cli.iter().copied()).collect();
    for option in &options {
        assert!(used.contains(&option.as_str()), "{option} has no row in EVERY_KEY");
    }
    // ... and every key of every device option.
    for (option, keys) in [
        ("--disk", DISK_KEYS),
        ("--net", NET_KEYS),
        ("--rng", ATTACH_KEYS),
        ("--console", ATTACH_KEYS),
        ("--iommu", IOMMU_KEYS),
        ("--pci-bridge", BRIDGE_KEYS),
    ] {
        let given: Vec<&str> = EVERY_KEY
            .iter()
            .flat_map(|(cli, _)| cli.windows(2).filter(|w| w[0] == option).map(|w| w[1]))
            .flat_map(|v| v.split(',').filter_map(|kv| kv.split_once('=').map(|(k, _)| k)))
            .collect();
        for key in keys {
            assert!(given.contains(key), "{option} {key}= has no row in EVERY_KEY");
        }
    }
}

const FILE: &str = r#"
cpus = 2
memory = "1G"
kernel = "vmlinuz"
initrd = "initrd.img"
cmdline = "console=ttyS0"

[iommu]
mixed-coherency = "reject"

[console]
transport = "mmio"

[[pci-bridge]]
id = "fast"
direct-ram-access = true

[[disk]]
id = "root"
path = "root.img"
transport = "pci"

[[disk]]
id = "data"
path = "/abs/data.img"
readonly = true

[[rng]]
"#;

#[test]
fn the_command_line_goes_over_the_file() {
    let file = write("merge.toml", FILE);
    let f = file.to_str().unwrap();
    let folder = file.parent().unwrap();

    // The file alone; relative paths are the file's folder's.
    let r = run_args(&["--config", f]).unwrap();
    assert_eq!((r.machine.cpus, r.machine.memory), (2, 1 << 30));
    assert_eq!(r.kernel.as_deref(), Some(folder.join("vmlinuz").as_path()));
    assert_eq!(r.initrd.as_deref(), Some(folder.join("initrd.img").as_path()));
    assert_eq!(r.cmdline.as_deref(), Some("console=ttyS0"));
    assert_eq!(disk_file(&r.machine.disk[0]), (folder.join("root.img").as_path(), false));
    assert_eq!(disk_file(&r.machine.disk[1]), (Path::new("/abs/data.img"), true));

    // Scalars replace; a device with a file device's id replaces it in its
    // place; others are added; --iommu and --console replace the file's.
    let r = run_args(&[
        "--config",
        f,
        "--cpus",
        "1",
        "--kernel",
        "/other/vmlinuz",
        "--disk",
        "path=/new/data.img,id=data",
        "--disk",
        "path=/new/extra.img",
        "--rng",
        "id=r2",
        "--pci-bridge",
        "id=fast",
        "--iommu",
        "transport=mmio",
    ])
    .unwrap();
    assert_eq!(
        (r.machine.cpus, r.machine.memory),
        (1, 1 << 30),
        "--cpus 1 is given even if it is the default"
    );
    assert_eq!(r.kernel.as_deref(), Some(Path::new("/other/vmlinuz")));
    assert_eq!(r.initrd.as_deref(), Some(folder.join("initrd.img").as_path()), "the file's initrd stays");
    let disks: Vec<(Option<&str>, &Path, bool)> =
        r.machine.disk.iter().map(|d| (d.attach.id.as_deref(), disk_file(d).0, disk_file(d).1)).collect();
    assert_eq!(
        disks,
        [
            (Some("root"), folder.join("root.img").as_path(), false),
            (Some("data"), Path::new("/new/data.img"), false), // replaced whole: readonly is gone
            (None, Path::new("/new/extra.img"), false),
        ]
    );
    assert_eq!(r.machine.rng.len(), 2);
    assert_eq!(r.machine.pci_bridge.len(), 1);
    assert!(!r.machine.pci_bridge[0].direct_ram_access, "replaced by the command line's id=fast");
    let iommu = r.machine.iommu.as_ref().unwrap();
    assert_eq!(iommu.transport, dmavm_machine::options::Transport::Mmio);
    assert_eq!(iommu.mixed_coherency, dmavm_machine::options::MixedCoherency::Allow, "replaced whole");
    assert!(r.machine.console.is_some());

    // --payload replaces what the file boots.
    let r = run_args(&["--config", f, "--payload", "/p.bin"]).unwrap();
    assert_eq!((r.kernel, r.initrd, r.cmdline), (None, None, None));
    // Without --config nothing changes.
    let r = run_args(&["--payload", "/p.bin"]).unwrap();
    assert_eq!((r.machine.cpus, r.machine.memory, r.machine.disk.len()), (1, 512 << 20, 0));
}

#[test]
fn kernel_and_initrd_may_come_from_either_side() {
    let file = write("kernel-only.toml", "kernel = \"/k/vmlinuz\"\n");
    let r = run_args(&["--config", file.to_str().unwrap(), "--initrd", "/k/initrd", "--cmdline", "quiet"])
        .unwrap();
    assert_eq!(r.kernel.as_deref(), Some(Path::new("/k/vmlinuz")));
    assert_eq!(r.initrd.as_deref(), Some(Path::new("/k/initrd")));
    assert_eq!(r.cmdline.as_deref(), Some("quiet"));
    // Without a config file, --initrd still needs --kernel from clap.
    let err = parse_args(["dmavm", "run", "--payload", "/p", "--initrd", "/i"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn errors_name_the_file_the_line_and_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "cpus = 1\n\n[[disk]]\nid = \"data\"\npath = \"d.img\"\nreadonlyy = true\n",
            "bad.toml:6: disk 'data': unknown key 'readonlyy' (known: path, readonly, id, transport, coherent, \
             direct-ram-access, bridge, slot, addr, dma-pool)",
        ),
        ("[[disk]]\npath = \"a\"\n[[disk]]\npath = \"b\"\ntransport = \"usb\"\n", "bad.toml:5: disk #2: transport=usb: expected mmio or pci"),
        ("[[disk]]\nid = \"x\"\nreadonly = true\n", "bad.toml:1: disk 'x': path=FILE is required"),
        ("[[disk]]\npath = \"a\"\n\n[[disk]]\nreadonly = true\n", "bad.toml:4: disk #2: path=FILE is required"),
        ("[[rng]]\nslot = 40\n", "bad.toml:2: rng #1: slot=40: expected a PCI device number from 1 to 31"),
        ("[iommu]\nmixed-coherency = \"maybe\"\n", "bad.toml:2: iommu: mixed-coherency=maybe: expected allow or reject"),
        ("[iommu]\ncoherent = false\n", "bad.toml:2: iommu: coherent=off: a key of type=vtd (the VT-d page-walk coherency)"),
        ("[iommu]\ntype = \"vtd\"\nslot = 3\n", "bad.toml:3: iommu: slot=3: a key of type=virtio: a VT-d unit is a register window"),
        ("[iommu]\ntype = \"amd\"\n", "bad.toml:2: iommu: type=amd: expected virtio or vtd"),
        ("[iommu]\ncolor = 1\n", "bad.toml:2: iommu: unknown key 'color' (known: type, id, transport, bridge, slot"),
        ("[[pci-bridge]]\ncoherent = false\n", "bad.toml:1: pci-bridge #1: id=NAME is required"),
        ("[[pci-bridge]]\nid = \"b\"\nhotplug = 2.5\n", "bad.toml:3: pci-bridge 'b': hotplug: expected a string, a boolean or an integer"),
        ("[console]\nid = \"c\"\ntransport = [\"pci\"]\n", "bad.toml:3: console 'c': transport: expected a string, a boolean or an integer"),
        ("cpus = 2\ncpu = 3\n", "bad.toml:2: unknown key 'cpu' (known: cpus, memory, kernel, initrd, cmdline, disk, net, rng"),
        ("cpus = 0\n", "bad.toml:1: cpus: a VM needs at least 1 vCPU"),
        ("\nmemory = \"lots\"\n", "bad.toml:2: memory: "),
        ("kernel = 3\n", "bad.toml:1: kernel: expected a path (string)"),
        ("[disk]\npath = \"a\"\n", "bad.toml:1: disk: expected [[disk]] tables, one per device"),
        ("iommu = true\n", "bad.toml:1: iommu: expected a [iommu] table"),
        ("cpus = 2\ncpus = 3\n", "bad.toml:2: not valid TOML: duplicate key"),
        ("cpus = \n", "bad.toml:1: not valid TOML: "),
    ];
    for (text, expected) in cases {
        let err = parse(text, "bad.toml", Path::new("/x")).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{text:?}:\n  got      {err}\n  expected {expected}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let err = load(Path::new("/nonexistent/m.toml")).unwrap_err().to_string();
    assert!(err.starts_with("cannot read the config file /nonexistent/m.toml: "), "{err}");
}

/// The examples, each with the warnings its comment announces.
/// The examples, each with the architecture it is for and the warnings
/// its comment announces.
const EXAMPLES: &[(&str, Arch, &[Code])] = &[
    ("no-iommu.toml", Arch::X86_64, &[]),
    ("translated.toml", Arch::X86_64, &[]),
    ("mixed.toml", Arch::X86_64, &[Code::Dma104]),
    ("bridges.toml", Arch::X86_64, &[Code::Dma104]),
    ("vtd.toml", Arch::X86_64, &[]),
    ("dma-pool.toml", Arch::Aarch64, &[Code::Dma107]),
];

#[test]
fn the_examples_build_with_their_expected_warnings_only() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/machines");
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(n, _, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every example is tested, every tested example exists");
    for (name, arch, expected) in EXAMPLES {
        let path = folder.join(name);
        let r = run_args(&["--config", path.to_str().unwrap()]).unwrap_or_else(|e| panic!("{e}"));
        let kernel = match arch {
            Arch::X86_64 => "build/guest/vmlinuz",
            Arch::Aarch64 => "build/guest-arm64/Image",
        };
        assert!(r.kernel.as_deref().is_some_and(|k| k.ends_with(kernel)), "{name}");
        let machine = Machine::new(&r.machine.options(), *arch).unwrap_or_else(|e| panic!("{e:#}"));
        let codes: Vec<Code> = check_with(&machine, Firmware::of(*arch)).iter().map(|f| f.code).collect();
        assert_eq!(&codes, expected, "{name}");
    }
}
