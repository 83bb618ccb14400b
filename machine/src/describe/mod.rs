//! `describe`: the machine a set of options builds, device by device, with
//! what the firmware declares about each. It builds the same machine model
//! as `run` (same options, same checks, same errors) and the same firmware
//! description (the ACPI tables for x86_64, the device tree for aarch64),
//! for either architecture on any host, and gives rows taken from both
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

use dmavm_acpi::AcpiTables;

use crate::checks;
use crate::dt::{check_cpus, initrd_region};
use crate::error::Result;
use crate::layout::aarch64::kvm_mpidr;
use crate::layout::check_memory;
use crate::options::MachineOptions;
use crate::{Arch, Machine};
use rows::{Description, Firmware};

/// How a description is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON object with typed values, for tools.
    Json,
}

/// What to describe.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The machine's options, as `run` takes them.
    pub options: &'a MachineOptions,
    /// Whose address map and firmware.
    pub arch: Arch,
    /// The host's RAM: `run` refuses more guest memory than that, and so
    /// does `describe`.
    pub host_memory: u64,
    /// The kernel command line (`bootargs` in the device tree's `/chosen`).
    pub cmdline: &'a str,
    /// The initrd's size, which places it in the device tree's `/chosen`;
    /// `None`: no initrd described.
    pub initrd_size: Option<u64>,
}

/// What `describe` built: the rows and the firmware they were taken from.
#[derive(Debug)]
pub struct Described {
    /// The rows and the findings.
    pub description: Description,
    /// x86_64: the ACPI tables, placed as `run` places them.
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

/// Builds the machine, its findings and its firmware as `run` would, and
/// the rows.
pub fn describe(request: &Request<'_>) -> Result<Described> {
    // The same checks and the same model as `run`: a configuration it
    // rejects fails here with the same message.
    check_memory(request.options.memory, request.host_memory)?;
    let machine = Machine::new(request.options, request.arch)?;
    describe_machine(&machine, request.cmdline, request.initrd_size)
}

/// [`describe`] of a machine already built (a running VM's, which
/// hot-plug may have changed since it started), with the kernel command
/// line and initrd size that place `/chosen` on aarch64.
pub fn describe_machine(machine: &Machine, cmdline: &str, initrd_size: Option<u64>) -> Result<Described> {
    // What a guest can know depends on its firmware (DMA104): the checks
    // of the machine's architecture.
    let findings = checks::check(machine);
    let refusal = checks::refusal(&findings);
    let findings = findings.iter().map(rows::FindingRow::from).collect();
    let arch = machine.arch;
    let built = match arch {
        Arch::X86_64 => acpi(machine),
        Arch::Aarch64 => device_tree(machine, cmdline, initrd_size),
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
fn device_tree(machine: &Machine, cmdline: &str, initrd_size: Option<u64>) -> Result<Built> {
    let initrd = initrd_size.map(|size| initrd_region(machine.boot_top(), size)).transpose()?;
    // KVM's default MPIDRs: what the arm64 back end's vCPUs report
    // (checked first: no list of a billion vCPUs).
    check_cpus(usize::try_from(machine.cpus).unwrap_or(usize::MAX))?;
    let mpidrs: Vec<u64> = (0..machine.cpus).map(kvm_mpidr).collect();
    let dt = machine.dt(&mpidrs, cmdline, initrd)?;
    let blob = dmavm_fdt::build(&dt)?;
    let devices = rows::rows(machine, Firmware::Dt(&dt));
    Ok(Built { devices, acpi: None, dtb: Some(blob) })
}

/// The x86_64 machine: its ACPI tables, built as `run` builds them.
fn acpi(machine: &Machine) -> Result<Built> {
    let platform = machine.acpi_platform()?;
    let tables =
        dmavm_acpi::build(&platform, crate::layout::x86_64::ACPI_START..crate::layout::x86_64::ACPI_END)?;
    let devices = rows::rows(machine, Firmware::Acpi(&platform));
    Ok(Built { devices, acpi: Some(tables), dtb: None })
}

/// The description as `--format` asks.
pub fn render(description: &Description, format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table::render(description),
        Format::Json => serde_json::to_string_pretty(description)? + "\n",
    })
}
