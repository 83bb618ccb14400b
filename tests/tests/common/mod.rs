//! What the guest test binaries share: running a scenario from the binary's
//! list (one sandbox boot for all of them) and reading its DMAVM values.

// Not every test binary uses every helper.
#![allow(dead_code)]
// A missing value fails the test, with the scenario report.
#![allow(clippy::panic)]

use dmavm_tests::{run_scenario, Error, ScenarioResult, Testbed};

/// The result of `name`, from one shared run of `all`, after printing which
/// test bed ran it (visible with `--nocapture` or on failure). The run
/// comes first: it installs missing packages, which detection may need.
pub fn scenario(all: &[&str], name: &str) -> Result<ScenarioResult, Error> {
    let r = run_scenario(all, name)?;
    println!("dmavm-tests: test bed: {}", Testbed::detect()?);
    Ok(r)
}

/// The value of `DMAVM key=`; a missing key fails the test with the whole
/// scenario report.
pub fn value<'a>(r: &'a ScenarioResult, key: &str) -> &'a str {
    r.dmavm_value(key).unwrap_or_else(|| panic!("no DMAVM {key}=: {r}"))
}

/// The numeric value of `DMAVM key=`.
pub fn number(r: &ScenarioResult, key: &str) -> u64 {
    value(r, key).parse().unwrap_or_else(|_| panic!("DMAVM {key}= is not a number: {r}"))
}
