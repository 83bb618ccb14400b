//! `dmavm describe`: the machine model's description
//! ([`dmavm_machine::describe`]) of the command line's machine, printed,
//! and the firmware it describes written where asked.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use dmavm_machine::describe::{describe, render, Described, Request};
use dmavm_machine::input_file::{self, Purpose};
use dmavm_machine::options::MachineOptions;
use dmavm_machine::DeviceKind;

use crate::cli::{Arch, DescribeArgs};
use crate::exit_status;
use crate::{acpi_dump, config, logger};

/// Runs `dmavm describe`; returns the exit status: 0, or 1 when `run`
/// would refuse the machine (the findings say why, and stderr has `run`'s
/// line) or it cannot be described at all.
pub fn run(args: DescribeArgs) -> u8 {
    if let Some(problem) = usage_problem(&args) {
        logger::report_error(&format!("{problem} (see dmavm describe --help)"));
        return exit_status::USAGE;
    }
    match described(&args).and_then(|d| output(&args, &d).map(|()| d.refusal)) {
        Ok(None) => 0,
        Ok(Some(refusal)) => {
            logger::report_error(&refusal);
            exit_status::ERROR
        }
        Err(e) => {
            logger::report_error(&format!("{e:#}"));
            exit_status::ERROR
        }
    }
}

/// Options that ask for another architecture's firmware.
fn usage_problem(args: &DescribeArgs) -> Option<&'static str> {
    match args.arch {
        Arch::X86_64 if args.dtb.is_some() || args.dts.is_some() => {
            Some("--dtb and --dts need --arch aarch64: an x86_64 guest gets ACPI tables (--dump-acpi DIR)")
        }
        Arch::Aarch64 if args.dump_acpi.is_some() => Some(
            "--dump-acpi needs --arch x86_64: an aarch64 guest gets a device tree (--dtb FILE, --dts FILE)",
        ),
        _ => None,
    }
}

/// The description of the command line's machine.
fn described(args: &DescribeArgs) -> Result<Described> {
    let options = args.machine.options();
    warn_of_unusable_disks(&options);
    let request = Request {
        options: &options,
        arch: args.arch.into(),
        host_memory: config::host_memory(),
        cmdline: args.cmdline.as_deref().unwrap_or_default(),
        initrd_size: match (&args.initrd, args.arch) {
            (Some(path), Arch::Aarch64) => initrd_size(path),
            _ => None,
        },
    };
    Ok(describe(&request)?)
}

/// A machine is described without its disk images (they may not be made
/// yet); one that `run` could not open is worth a warning each, since
/// `run` refuses the machine for it.
fn warn_of_unusable_disks(options: &MachineOptions) {
    for device in &options.devices {
        if let DeviceKind::Disk { path, readonly } = &device.kind {
            if let Err(e) = input_file::check(path, Purpose::Disk { writable: !readonly }) {
                log::warn!("{e} (described all the same; run refuses it)");
            }
        }
    }
}

/// The initrd's size for the device tree's `/chosen`. A machine can be
/// described before its guest image is built: an initrd that cannot be
/// read yet is left out of `/chosen`, with a warning.
fn initrd_size(path: &Path) -> Option<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Some(m.len()),
        Err(e) => {
            log::warn!("cannot read the initrd {} ({e}): /chosen is described without it", path.display());
            None
        }
    }
}

/// Writes the files asked for, then prints the description (so that a
/// failed write prints nothing but the error). A machine `run` refuses
/// gets no firmware, so none is written for it.
fn output(args: &DescribeArgs, d: &Described) -> Result<()> {
    let text = render(&d.description, args.format.into())?;
    if d.refusal.is_some() {
        return print(&text);
    }
    if let (Some(dir), Some(tables)) = (&args.dump_acpi, &d.acpi) {
        acpi_dump::write(tables, dir)?;
    }
    if let Some(blob) = &d.dtb {
        if let Some(path) = &args.dtb {
            std::fs::write(path, blob).with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(path) = &args.dts {
            let dts = dmavm_fdt::to_dts(blob).context("rendering the device tree")?;
            std::fs::write(path, dts).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    print(&text)
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to stdout")
}
