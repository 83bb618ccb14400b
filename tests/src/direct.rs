//! Running scenarios directly on a machine with hardware KVM.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::command::{describe, status_code};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::paths::Paths;
use crate::prepare::Artefacts;
use crate::scenario::{ScenarioResult, STATUS_TIMEOUT};

/// Runs `names` (already validated) one after another on this machine, each
/// as `sh tests/scenarios/NAME.sh` with stdout and stderr combined, the
/// scenario environment and `vars` set and `timeout` seconds (coreutils `timeout`,
/// which signals the script's whole process group). Writes the same framed
/// log as the sandbox.
pub(crate) fn run(
    paths: &Paths,
    art: &Artefacts,
    names: &[String],
    vars: &[(String, String)],
    timeout: u64,
) -> Result<Vec<ScenarioResult>> {
    let mut log = RunLog::create(&paths.logs(), "direct")?;
    let mut results = Vec::new();
    for name in names {
        let script = paths.scenario(name);
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "10", &timeout.to_string(), "sh", "-c"])
            .arg("exec sh \"$0\" 2>&1")
            .arg(&script)
            .env("DMAVM", &art.dmavm)
            .env("PAYLOADS", &art.payloads)
            .env("GUEST", &art.guest)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(&paths.root)
            .stdin(Stdio::null());
        log.line(&format!("@@DMAVM-SCENARIO-BEGIN {name}"))?;
        let t0 = Instant::now();
        let out = cmd.output().map_err(|e| Error::io(format!("running `{}`", describe(&cmd)), e))?;
        let secs = t0.elapsed().as_secs_f64();
        let mut output: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        let status = status_code(out.status);
        if status == STATUS_TIMEOUT {
            output.push(format!("dmavm-tests: timed out after {timeout}s"));
        }
        for line in &output {
            log.line(line)?;
        }
        log.line(&format!("@@DMAVM-SCENARIO-END {name} status={status} secs={secs:.2}"))?;
        results.push(ScenarioResult {
            name: name.clone(),
            status,
            output,
            secs,
            log: Some(log.path().to_path_buf()),
            testbed: "direct",
        });
    }
    log.flush()?;
    Ok(results)
}
