//! Running the preparation commands (scripts, cargo) with their output
//! captured, turning failures into [`Error::CommandFailed`].

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::error::{Error, Result};

/// How many output lines a failure message keeps.
const TAIL_LINES: usize = 40;

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// "exit status N" or "killed by signal N".
pub(crate) fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "unknown status".to_string(),
    }
}

/// The exit code of a finished process, or 128 + signal as a shell reports it.
pub(crate) fn status_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to completion with stdin closed and its output captured;
/// an unsuccessful exit becomes [`Error::CommandFailed`] carrying the tail
/// of its stderr and stdout.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Error::io(format!("running `{line}`"), e))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(Error::CommandFailed {
        command: line,
        status: status_text(out.status),
        output_tail: tail(&text, TAIL_LINES),
    })
}
