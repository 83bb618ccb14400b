//! The validated description of the VM to run, built from the command line.

use std::path::PathBuf;

use anyhow::{bail, Result};
use dmavm_machine::input_file::{self, Purpose};
use dmavm_machine::layout::check_memory;
use dmavm_machine::{DeviceKind, Machine};

use crate::cli::{Arch, MachineArgs, RunArgs};

/// What the vCPUs start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A flat test payload.
    Payload(PathBuf),
    /// A Linux kernel.
    Kernel {
        /// bzImage or ELF vmlinux.
        kernel: PathBuf,
        /// Initial ramdisk.
        initrd: Option<PathBuf>,
        /// Kernel command line.
        cmdline: String,
    },
}

/// The VM to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// vCPU count.
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// What to start.
    pub boot: Boot,
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// Where to dump the ACPI tables, if anywhere.
    pub dump_acpi: Option<PathBuf>,
    /// The devices and where they sit.
    pub machine: Machine,
    /// Print IOMMU counters at exit.
    pub stats: bool,
    /// Test only: virtio-mmio devices whose device-tree `dma-coherent` is
    /// the opposite of their coherency (`--test-dt-flip-coherent`).
    pub dt_flip_coherent: Vec<String>,
    /// The threads' system call filters.
    pub seccomp: crate::seccomp::Mode,
    /// Where to serve the control socket, if anywhere.
    pub api_socket: Option<PathBuf>,
}

impl VmConfig {
    /// Builds the config from `dmavm run` options, checking what can be
    /// checked without KVM.
    pub fn from_args(args: RunArgs, host_memory: u64) -> Result<Self> {
        let machine = machine(&args.machine, host_memory)?;
        if !args.test_dt_flip_coherent.is_empty() && !cfg!(target_arch = "aarch64") {
            bail!("--test-dt-flip-coherent changes an arm64 device tree: this dmavm runs x86_64 guests");
        }
        let boot = match (args.payload, args.kernel) {
            // Only with --config can these meet here (clap refuses them
            // otherwise): the file's kernel is dropped, a --initrd or
            // --cmdline given next to --payload is an error.
            (Some(_), _) if args.initrd.is_some() || args.cmdline.is_some() => {
                bail!("--initrd and --cmdline need a kernel: --payload boots neither")
            }
            (Some(payload), _) => Boot::Payload(payload),
            (None, Some(kernel)) => {
                Boot::Kernel { kernel, initrd: args.initrd, cmdline: args.cmdline.unwrap_or_default() }
            }
            (None, None) => bail!("give --kernel or --payload (or kernel = \"PATH\" in the --config file)"),
        };
        Ok(Self {
            cpus: args.machine.cpus,
            memory: args.machine.memory,
            boot,
            kvm_device: args.kvm_device,
            dump_acpi: args.dump_acpi,
            machine,
            stats: args.stats,
            dt_flip_coherent: args.test_dt_flip_coherent,
            seccomp: args.seccomp,
            api_socket: args.api_socket,
        })
    }

    /// Checks the vCPU count against what KVM allows on this host.
    pub fn check_cpus(&self, max: u32) -> Result<()> {
        if self.cpus == 0 || self.cpus > max {
            bail!("--cpus {} is out of range: this host's KVM allows 1 to {max}", self.cpus);
        }
        Ok(())
    }
}

/// The machine model of `run`'s options for the architecture this dmavm
/// runs, checked as far as that is possible without KVM.
pub fn machine(args: &MachineArgs, host_memory: u64) -> Result<Machine> {
    check_memory(args.memory, host_memory)?;
    Ok(Machine::new(&args.options(), Arch::HOST.into())?)
}

/// The files `run` reads, checked before KVM is touched: each must exist
/// and be a kind of file dmavm reads (a missing disk image is one line
/// here rather than an error halfway through building the VM). They are
/// checked again when opened.
pub fn check_files(config: &VmConfig) -> Result<()> {
    for device in &config.machine.devices {
        if let DeviceKind::Disk { path, readonly } = &device.kind {
            input_file::check(path, Purpose::Disk { writable: !readonly })
                .map_err(|e| anyhow::anyhow!("{}: {e}", device.id))?;
        }
    }
    match &config.boot {
        Boot::Payload(payload) => input_file::check(payload, Purpose::Payload)?,
        Boot::Kernel { kernel, initrd, .. } => {
            input_file::check(kernel, Purpose::Kernel)?;
            if let Some(initrd) = initrd {
                input_file::check(initrd, Purpose::Initrd)?;
            }
        }
    }
    Ok(())
}

/// Physical RAM of the host, in bytes.
pub fn host_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(pages).unwrap_or(0).saturating_mul(u64::try_from(page).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_limits() {
        let c = VmConfig {
            cpus: 9,
            memory: 64 << 20,
            boot: Boot::Payload("p".into()),
            kvm_device: "k".into(),
            dump_acpi: None,
            machine: Machine::empty(Arch::HOST.into(), 64 << 20),
            stats: false,
            dt_flip_coherent: Vec::new(),
            seccomp: crate::seccomp::Mode::On,
            api_socket: None,
        };
        assert!(c.check_cpus(8).is_err());
        assert!(c.check_cpus(9).is_ok());
    }
}
