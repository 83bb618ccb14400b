//! `testbed`: run scenarios from `tests/scenarios/` by hand and print what
//! they printed, on the same test bed the tests use (hardware KVM directly,
//! else the nested sandbox).
//!
//! usage: cargo run -p dmavm-tests --bin testbed -- [--arch x86_64|aarch64]
//!        [--env NAME=VALUE]... SCENARIO...
//! `--arch aarch64` runs arm64 scenarios (resources/testbed-arm64/scenarios/,
//! tests/scenarios/arm64-*) in the arm64 sandbox (dmavm_tests::arm64).
//! `--env` puts NAME=VALUE in the (x86_64) scenarios' environment, inside
//! the sandbox too (see `Testbed::run_with_env`), e.g. linux-demo's
//! DEMO_CPUS and DEMO_MEMORY.
//! exit status: 0 when every scenario exited 0, else 1; 2 for usage errors.

use std::process::ExitCode;

use dmavm_tests::arm64::Arm64Sandbox;
use dmavm_tests::Testbed;

fn main() -> ExitCode {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    let mut arm64 = false;
    if names.first().map(String::as_str) == Some("--arch") && names.len() >= 2 {
        match names[1].as_str() {
            "aarch64" | "arm64" => arm64 = true,
            "x86_64" => {}
            other => {
                eprintln!("testbed: unknown --arch {other:?}: x86_64 or aarch64");
                return ExitCode::from(2);
            }
        }
        names.drain(..2);
    }
    let mut vars = Vec::new();
    while names.first().map(String::as_str) == Some("--env") {
        let Some((name, value)) = names.get(1).and_then(|v| v.split_once('=')) else {
            eprintln!("testbed: --env needs NAME=VALUE");
            return ExitCode::from(2);
        };
        vars.push((name.to_string(), value.to_string()));
        names.drain(..2);
    }
    if names.is_empty() || names.iter().any(|n| n.starts_with('-')) {
        eprintln!(
            "usage: testbed [--arch x86_64|aarch64] [--env NAME=VALUE]... SCENARIO... (scripts in \
             tests/scenarios/, e.g. linux-demo; for aarch64 in resources/testbed-arm64/scenarios/, \
             e.g. arm64-kvm)"
        );
        return ExitCode::from(2);
    }
    if arm64 && !vars.is_empty() {
        eprintln!("testbed: --env is not supported with --arch aarch64");
        return ExitCode::from(2);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let result = if arm64 {
        Arm64Sandbox::detect().and_then(|bed| {
            eprintln!("testbed: running on {bed}");
            bed.run(&names)
        })
    } else {
        Testbed::detect().and_then(|bed| {
            eprintln!("testbed: running on {bed}");
            bed.run_with_env(&names, &vars)
        })
    };
    match result {
        Ok(results) => {
            let mut ok = true;
            for r in &results {
                for line in &r.output {
                    println!("{line}");
                }
                println!("testbed: {} exited {} after {:.1} s", r.name, r.status, r.secs);
                ok &= r.status == 0;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("testbed: error: {e}");
            ExitCode::FAILURE
        }
    }
}
