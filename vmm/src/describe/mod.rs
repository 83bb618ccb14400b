//! `dmavm describe`: the machine a set of `run` options builds, device by
//! device, with what the firmware tables declare about each. No KVM: it
//! builds the same machine model as `run` (same options, same checks, same
//! errors) and the same firmware description (the ACPI tables for x86_64,
//! the device tree for aarch64), and prints rows taken from both
//! ([`rows`]). docs/coherency.md explains the columns and what Linux does
//! with each object.

#[cfg(test)]
pub(crate) mod decode;
pub mod rows;
pub mod table;
#[cfg(test)]
pub(crate) mod test_machines;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use dmavm_acpi::AcpiTables;
use dmavm_fdt::layout::kvm_mpidr;

use crate::checks;
use crate::cli::{Arch, DescribeArgs, Format};
use crate::config;
use crate::exit_status;
#[cfg(target_arch = "x86_64")]
use crate::firmware;
use crate::logger;
use crate::machine::dt::{check_cpus, initrd_region};
use crate::machine::Machine;
use rows::{ArchName, Description, Firmware};

/// What `describe` built: the rows and the firmware they were taken from.
#[derive(Debug)]
pub struct Described {
    /// The rows and the findings.
    pub description: Description,
    /// x86_64: the ACPI tables, placed as `run` places them.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub acpi: Option<AcpiTables>,
    /// aarch64: the device tree blob.
    pub dtb: Option<Vec<u8>>,
    /// The line `run` would refuse this machine with, if it would.
    pub refusal: Option<String>,
}

/// The rows and the firmware of one architecture.
struct Built {
    devices: Vec<rows::Row>,
    acpi: Option<AcpiTables>,
    dtb: Option<Vec<u8>>,
}

/// Runs `dmavm describe`; returns the exit status: 0, or 1 when `run`
/// would refuse the machine (the findings say why, and stderr has `run`'s
/// line) or it cannot be described at all.
pub fn run(args: DescribeArgs) -> u8 {
    if let Some(problem) = usage_problem(&args) {
        logger::report_error(&format!("{problem} (see dmavm describe --help)"));
        return exit_status::USAGE;
    }
    match describe(&args).and_then(|d| output(&args, &d).map(|()| d.refusal)) {
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

/// Builds the machine, its findings and its firmware as `run` would, and
/// the rows.
pub fn describe(args: &DescribeArgs) -> Result<Described> {
    // The same function as `run`: a configuration it rejects fails here
    // with the same message.
    let machine = config::machine(&args.machine, config::host_memory())?;
    // The same checks as `run`, for the firmware of the architecture
    // described (what a guest can know depends on it: DMA104).
    let (arch, checked) = match args.arch {
        Arch::X86_64 => (ArchName::X86_64, checks::Firmware::Acpi),
        Arch::Aarch64 => (ArchName::Aarch64, checks::Firmware::DeviceTree),
    };
    let findings = checks::check_with(&machine, checked);
    let refusal = checks::refusal(&findings);
    let findings = findings.iter().map(rows::FindingRow::from).collect();
    let built = match args.arch {
        Arch::X86_64 => acpi(&machine, args.machine.cpus, args.machine.memory),
        Arch::Aarch64 => device_tree(&machine, args),
    };
    match built {
        Ok(Built { devices, acpi, dtb }) => {
            Ok(Described { description: Description { arch, devices, findings }, acpi, dtb, refusal })
        }
        // A machine `run` refuses may have no firmware at all (two devices
        // at one address): the findings are what there is to say.
        Err(_) if refusal.is_some() => Ok(Described {
            description: Description { arch, devices: Vec::new(), findings },
            acpi: None,
            dtb: None,
            refusal,
        }),
        Err(e) => Err(e),
    }
}

/// The aarch64 machine: its device tree, built as the arm64 back end
/// builds it.
fn device_tree(machine: &Machine, args: &DescribeArgs) -> Result<Built> {
    let (cpus, memory) = (args.machine.cpus, args.machine.memory);
    let initrd = match &args.initrd {
        Some(path) => Some(initrd_region(memory, file_size(path)?)?),
        None => None,
    };
    // KVM's default MPIDRs: what the arm64 back end's vCPUs report
    // (checked first: no list of a billion vCPUs).
    check_cpus(usize::try_from(cpus)?)?;
    let mpidrs: Vec<u64> = (0..cpus).map(kvm_mpidr).collect();
    let dt = machine.dt(&mpidrs, memory, args.cmdline.as_deref().unwrap_or_default(), initrd)?;
    let blob = dmavm_fdt::build(&dt).context("building the device tree")?;
    let devices = rows::rows(machine, Firmware::Dt(&dt));
    Ok(Built { devices, acpi: None, dtb: Some(blob) })
}

/// The x86_64 machine: its ACPI tables, built as `run` builds them.
#[cfg(target_arch = "x86_64")]
fn acpi(machine: &Machine, cpus: u32, memory: u64) -> Result<Built> {
    let platform = firmware::platform(cpus, memory, machine)?;
    let tables = firmware::tables(&platform)?;
    let devices = rows::rows(machine, Firmware::Acpi(&platform));
    Ok(Built { devices, acpi: Some(tables), dtb: None })
}

/// An arm64 build places the model in the arm64 address map, which x86_64
/// firmware cannot describe (its windows are elsewhere).
#[cfg(not(target_arch = "x86_64"))]
fn acpi(_machine: &Machine, _cpus: u32, _memory: u64) -> Result<Built> {
    anyhow::bail!(
        "--arch x86_64 needs a dmavm built for x86_64: this one places devices in the arm64 address map"
    )
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("cannot read the initrd {}", path.display()))?.len())
}

/// The description as `--format` asks.
pub fn render(description: &Description, format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table::render(description),
        Format::Json => serde_json::to_string_pretty(description).context("encoding JSON")? + "\n",
    })
}

/// Writes the files asked for, then prints the description (so that a
/// failed write prints nothing but the error). A machine `run` refuses
/// gets no firmware, so none is written for it.
fn output(args: &DescribeArgs, d: &Described) -> Result<()> {
    if d.refusal.is_some() {
        return print(&render(&d.description, args.format)?);
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(dir), Some(tables)) = (&args.dump_acpi, &d.acpi) {
        firmware::dump(tables, dir)?;
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
    print(&render(&d.description, args.format)?)
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to stdout")
}
