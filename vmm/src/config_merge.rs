//! `--config FILE` on the command line: the file's machine
//! ([`dmavm_machine::config_file`]) with the command line's options over
//! it.
//!
//! `--cpus`, `--memory`, `--kernel`, `--initrd`, `--cmdline`, `--console`
//! and `--iommu` replace the file's value (`--payload` replaces the file's
//! kernel, initrd and cmdline); `--disk`, `--net`, `--rng` and `--pci-bridge` are
//! added after the file's, except that one with the `id=` of a device or
//! bridge of the file replaces that one whole, in its place.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use dmavm_machine::config_file::{load, ConfigError, FileConfig};
use dmavm_machine::options::DeviceOptions;

use crate::cli::{Cli, Command, MachineArgs};

/// Devices of the file, then the command line's: one whose id is that of
/// a file device replaces it in its place, the others are added.
fn merge_devices<T>(file: Vec<T>, cli: Vec<T>, id: impl Fn(&T) -> Option<String>) -> Vec<T> {
    let from_file = file.len();
    let mut merged = file;
    let mut replaced = vec![false; from_file];
    for device in cli {
        let same = id(&device).and_then(|want| {
            (0..from_file).find(|&i| !replaced[i] && id(&merged[i]).as_ref() == Some(&want))
        });
        match same {
            Some(i) => {
                merged[i] = device;
                replaced[i] = true;
            }
            None => merged.push(device),
        }
    }
    merged
}

/// The machine options of the command line over `file`. `matches` are the
/// subcommand's, to tell an option given from one left at its default.
pub fn merge_machine(args: &mut MachineArgs, file: FileConfig, matches: &ArgMatches) {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if let (false, Some(cpus)) = (given("cpus"), file.cpus) {
        args.cpus = cpus;
    }
    if let (false, Some(memory)) = (given("memory"), file.memory) {
        args.memory = memory;
    }
    let of = |option: &str| -> Vec<DeviceOptions> {
        file.devices.iter().filter(|d| d.kind.option() == option).cloned().collect()
    };
    let id = |d: &DeviceOptions| d.attach.id.clone();
    args.disk = merge_devices(of("disk"), std::mem::take(&mut args.disk), id);
    args.net = merge_devices(of("net"), std::mem::take(&mut args.net), id);
    args.rng = merge_devices(of("rng"), std::mem::take(&mut args.rng), id);
    if args.console.is_none() {
        args.console = of("console").pop();
    }
    args.pci_bridge =
        merge_devices(file.bridges, std::mem::take(&mut args.pci_bridge), |b| Some(b.id.clone()));
    if args.iommu.is_none() {
        args.iommu = file.iommu;
    }
}

/// Parses a command line as `Cli::try_parse_from` does, keeping clap's
/// matches: they tell an option given from one left at its default, which
/// is what [`apply`] needs.
pub fn parse_args<I, T>(args: I) -> Result<(Cli, ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    Ok((cli, matches))
}

/// Loads the `--config` file of `command`, if any, and puts the command
/// line's options over it, so that `run` and `describe` see one merged
/// set of options. `matches` are the whole command line's.
pub fn apply(command: &mut Command, matches: &ArgMatches) -> Result<(), ConfigError> {
    let (name, machine, kernel, initrd, cmdline, payload) = match command {
        Command::Run(a) => {
            ("run", &mut a.machine, &mut a.kernel, &mut a.initrd, &mut a.cmdline, a.payload.is_some())
        }
        Command::Describe(a) => {
            ("describe", &mut a.machine, &mut a.kernel, &mut a.initrd, &mut a.cmdline, false)
        }
        // Commands without a machine; a wildcard so that a new command
        // builds before it takes --config.
        _ => return Ok(()),
    };
    let Some(path) = machine.config.clone() else {
        return Ok(());
    };
    let Some(sub) = matches.subcommand_matches(name) else {
        return Ok(());
    };
    let mut file = load(&path)?;
    // --payload replaces what the file would boot.
    if !payload {
        *kernel = kernel.take().or(file.kernel.take());
        *initrd = initrd.take().or(file.initrd.take());
        *cmdline = cmdline.take().or(file.cmdline.take());
    }
    merge_machine(machine, file, sub);
    Ok(())
}

#[cfg(test)]
mod tests;
