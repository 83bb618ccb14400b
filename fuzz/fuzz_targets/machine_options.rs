//! The machine model under hostile user input: arbitrary option texts
//! (`--disk`, `--rng`, `--console`, `--iommu`, `--pci-bridge`, `--cpus`,
//! `--memory`) and arbitrary config-file TOML, through the parsers,
//! `Machine::new`, the checks and `describe` for both architectures.
//!
//! Oracle: no panic and no hang (libFuzzer's timeout); bad input is an
//! error, never a crash.

#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use dmavm_machine::describe::{describe, Request};
use dmavm_machine::options::{
    parse_bridge, parse_console, parse_cpus, parse_disk, parse_iommu, parse_rng, MachineOptions,
};
use dmavm_machine::size::parse_size;
use dmavm_machine::{checks, config_file, Arch, Machine};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Opt {
    Disk(String),
    Rng(String),
    Console(String),
    Iommu(String),
    Bridge(String),
    Cpus(String),
    Memory(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Options(Vec<Opt>),
    File(String),
}

fn run(options: &MachineOptions, cmdline: &str) {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        if let Ok(machine) = Machine::new(options, arch) {
            let _ = checks::check(&machine);
        }
        let request = Request { options, arch, host_memory: 64 << 30, cmdline, initrd_size: Some(1 << 20) };
        let _ = describe(&request);
    }
}

fuzz_target!(|input: Input| dmavm_fuzz::within_cpu_budget(|| {
    match input {
        Input::Options(opts) => {
            let mut o = MachineOptions::new(1, 256 << 20);
            for opt in opts.iter().take(16) {
                // A parse error is the answer; the option is left out.
                match opt {
                    Opt::Disk(t) => o.devices.extend(parse_disk(t)),
                    Opt::Rng(t) => o.devices.extend(parse_rng(t)),
                    Opt::Console(t) => o.devices.extend(parse_console(t)),
                    Opt::Iommu(t) => o.iommu = parse_iommu(t).ok().or(o.iommu.take()),
                    Opt::Bridge(t) => o.bridges.extend(parse_bridge(t)),
                    Opt::Cpus(t) => o.cpus = parse_cpus(t).unwrap_or(o.cpus),
                    Opt::Memory(t) => o.memory = parse_size(t).unwrap_or(o.memory),
                }
            }
            run(&o, "console=ttyS0");
        }
        Input::File(text) => {
            let Ok(file) = config_file::parse(&text, "fuzz.toml", Path::new("/nonexistent")) else { return };
            let o = MachineOptions {
                cpus: file.cpus.unwrap_or(1),
                memory: file.memory.unwrap_or(256 << 20),
                bridges: file.bridges,
                devices: file.devices,
                iommu: file.iommu,
            };
            run(&o, file.cmdline.as_deref().unwrap_or(""));
        }
    }
}));
