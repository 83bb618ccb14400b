//! Running scenario lists: validation, preparation, dispatch to the direct or
//! sandbox path, and the process-wide cache that lets the tests of one test
//! binary share a single run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::prepare::{install_packages, prepare, Artefacts};
use crate::scenario::ScenarioResult;
use crate::testbed::Testbed;
use crate::{direct, sandbox};

/// Per-scenario time limit when `DMAVM_SCENARIO_TIMEOUT` is not set and no
/// scenario of the run declares more.
pub const DEFAULT_SCENARIO_TIMEOUT_SECS: u64 = 120;

/// The most a scenario may declare it needs (`# timeout: SECS`).
const MAX_DECLARED_TIMEOUT_SECS: u64 = 1800;

/// A run's outcome as kept in the cache (errors shared between callers).
type Cached<T> = std::result::Result<T, Arc<Error>>;

/// The per-scenario time limit in seconds: `DMAVM_SCENARIO_TIMEOUT` or 120.
pub fn scenario_timeout() -> u64 {
    std::env::var("DMAVM_SCENARIO_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SCENARIO_TIMEOUT_SECS)
}

impl Testbed {
    /// Runs the scenarios on this test bed, uncached: validates the names,
    /// installs missing packages and prepares the artefacts (both once per
    /// process) and runs every scenario in order, in one sandbox boot on
    /// [`Testbed::Sandbox`]. Runs are serialised within a process (they
    /// compete for the same CPUs).
    pub fn run(&self, names: &[&str]) -> Result<Vec<ScenarioResult>> {
        self.run_with_env(names, &[])
    }

    /// [`Testbed::run`], with `vars` (`NAME=value`) added to every
    /// scenario's environment, on the host or inside L1 alike: settings of
    /// a scenario such as the guest's size. In the sandbox they travel on
    /// L1's kernel command line (`dmavm.env.NAME=value`), so a name must be
    /// upper-case letters, digits and '_' (not starting with a digit) and
    /// not one the scenarios are given anyway, and a value must be 1 to 64
    /// of `A-Za-z0-9._,:+-` (no space, quote or '=').
    pub fn run_with_env(&self, names: &[&str], vars: &[(&str, &str)]) -> Result<Vec<ScenarioResult>> {
        let paths = Paths::new();
        let names = validate(&paths, names)?;
        let vars = validate_vars(vars)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        static RUN_LOCK: Mutex<()> = Mutex::new(());
        let _serial = RUN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        packages(&paths)?;
        let art = prepared(&paths)?;
        // The limit for every scenario of the run: the default or the
        // environment's, raised to what a scenario of the run declares
        // it needs (`# timeout: SECS`).
        let timeout = scenario_timeout().max(
            crate::scenario_header::most_declared(&paths, &names, "timeout", 1..=MAX_DECLARED_TIMEOUT_SECS)
                .unwrap_or(0),
        );
        match self {
            Testbed::Direct => direct::run(&paths, &art, &names, &vars, timeout),
            Testbed::Sandbox { qemu, .. } => sandbox::run(&paths, qemu, &art, &names, &vars, timeout),
        }
    }
}

/// Checks every name is a plain file stem with a script in
/// `tests/scenarios/`.
fn validate(paths: &Paths, names: &[&str]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|&name| {
            let plain =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err(Error::BadScenarioName(name.to_string()));
            }
            let path = paths.scenario(name);
            if !path.is_file() {
                return Err(Error::NoSuchScenario { name: name.to_string(), path });
            }
            Ok(name.to_string())
        })
        .collect()
}

/// Names every scenario is given by the test bed itself (and PATH, which
/// L1's init sets), which a variable must not replace.
const RESERVED_VARS: [&str; 4] = ["DMAVM", "PAYLOADS", "GUEST", "PATH"];

/// Checks `vars` against the rules of [`Testbed::run_with_env`].
fn validate_vars(vars: &[(&str, &str)]) -> Result<Vec<(String, String)>> {
    vars.iter()
        .map(|&(name, value)| {
            let bad = |why| Err(Error::BadScenarioVar(format!("{name}={value}"), why));
            let name_ok = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                return bad("the name must be upper-case letters, digits and '_', not starting with a digit");
            }
            if RESERVED_VARS.contains(&name) {
                return bad("the test bed sets this variable itself");
            }
            let value_ok = (1..=64).contains(&value.len())
                && value.chars().all(|c| c.is_ascii_alphanumeric() || "._,:+-".contains(c));
            if !value_ok {
                return bad("the value must be 1 to 64 of the characters A-Z a-z 0-9 . _ , : + -");
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// [`install_packages`], done once per process.
fn packages(paths: &Paths) -> Result<()> {
    static INSTALLED: OnceLock<Cached<()>> = OnceLock::new();
    INSTALLED.get_or_init(|| install_packages(paths).map_err(Arc::new)).clone().map_err(Error::Shared)
}

/// [`prepare`], done once per process.
fn prepared(paths: &Paths) -> Result<Artefacts> {
    static PREPARED: OnceLock<Cached<Artefacts>> = OnceLock::new();
    PREPARED.get_or_init(|| prepare(paths).map_err(Arc::new)).clone().map_err(Error::Shared)
}

/// Installs missing packages (so a fresh machine gets QEMU before
/// detection), then [`Testbed::detect`] and [`Testbed::run`], without the
/// result cache.
pub fn run_scenarios_uncached(names: &[&str]) -> Result<Vec<ScenarioResult>> {
    packages(&Paths::new())?;
    Testbed::detect()?.run(names)
}

/// Runs the scenarios on the detected test bed, at most once per process for
/// a given list: later calls with the same list (from other tests of the same
/// test binary, even concurrently) wait for and share the first call's
/// results. To share one sandbox boot, every test of a binary should pass the
/// same full list and pick its own result (see [`run_scenario`]).
pub fn run_scenarios(names: &[&str]) -> Result<Vec<ScenarioResult>> {
    static CACHE: RunCache = OnceLock::new();
    cached(&CACHE, names, run_scenarios_uncached)
}

/// Runs of scenario lists, by list, each done at most once per process.
pub(crate) type RunCache = OnceLock<Mutex<HashMap<Vec<String>, Arc<OnceLock<Cached<Vec<ScenarioResult>>>>>>>;

/// `run(names)` through `cache`: the first call for a list runs it, later
/// (also concurrent) calls with the same list wait for and share its
/// results.
pub(crate) fn cached(
    cache: &'static RunCache,
    names: &[&str],
    run: fn(&[&str]) -> Result<Vec<ScenarioResult>>,
) -> Result<Vec<ScenarioResult>> {
    let key: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cell = {
        let mut map = cache.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key).or_default())
    };
    cell.get_or_init(|| run(names).map_err(Arc::new)).clone().map_err(Error::Shared)
}

/// The result of `name` from `run_all(all)`, which must list it.
pub(crate) fn pick(
    all: &[&str],
    name: &str,
    run_all: fn(&[&str]) -> Result<Vec<ScenarioResult>>,
) -> Result<ScenarioResult> {
    let not_in_list =
        || Error::NotInList { name: name.to_string(), list: all.iter().map(|s| s.to_string()).collect() };
    if !all.contains(&name) {
        return Err(not_in_list());
    }
    run_all(all)?.into_iter().find(|r| r.name == name).ok_or_else(not_in_list)
}

/// The result of scenario `name` from the (cached) run of the whole list
/// `all`, which must contain it.
pub fn run_scenario(all: &[&str], name: &str) -> Result<ScenarioResult> {
    pick(all, name, run_scenarios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_vars() {
        let ok =
            validate_vars(&[("DEMO_CPUS", "1"), ("DEMO_MEMORY", "768M"), ("_X2", "a.b,c:d+e-f")]).unwrap();
        assert_eq!(ok[1], ("DEMO_MEMORY".to_string(), "768M".to_string()));
        for (name, value) in [
            ("demo", "1"),
            ("2X", "1"),
            ("A-B", "1"),
            ("", "1"),
            ("GUEST", "/tmp"),
            ("X", ""),
            ("X", "1 2"),
            ("X", "a=b"),
            ("X", "'q'"),
            ("X", "$(reboot)"),
        ] {
            let err = validate_vars(&[(name, value)]).unwrap_err();
            assert!(matches!(err, Error::BadScenarioVar(..)), "{name}={value}: {err}");
        }
        assert!(validate_vars(&[("X", &"9".repeat(65))]).is_err());
    }
}
