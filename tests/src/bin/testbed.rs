//! `testbed`: run scenarios from `tests/scenarios/` by hand and print what
//! they printed, on the same test bed the tests use (hardware KVM directly,
//! else the nested sandbox).
//!
//! usage: cargo run -p dmavm-tests --bin testbed -- SCENARIO...
//! exit status: 0 when every scenario exited 0, else 1; 2 for usage errors.

use std::process::ExitCode;

use dmavm_tests::Testbed;

fn main() -> ExitCode {
    let names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() || names.iter().any(|n| n.starts_with('-')) {
        eprintln!("usage: testbed SCENARIO... (scripts in tests/scenarios/, e.g. linux-demo)");
        return ExitCode::from(2);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let result = Testbed::detect().and_then(|bed| {
        eprintln!("testbed: running on {bed}");
        bed.run(&names)
    });
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
