//! The result of one scenario run and the `DMAVM key=value` lines in it.

use std::fmt;
use std::path::PathBuf;

/// Status of a scenario that never reported its end (the sandbox died, hung
/// or ran out of time before the scenario finished).
pub const STATUS_UNFINISHED: i32 = -1;

/// Status of a scenario stopped by its time limit.
pub const STATUS_TIMEOUT: i32 = 124;

/// What one scenario did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    /// The scenario's name (`tests/scenarios/NAME.sh`).
    pub name: String,
    /// The script's exit status: 0 = passed; [`STATUS_TIMEOUT`] when its
    /// time limit stopped it; [`STATUS_UNFINISHED`] when it never finished
    /// (then `output` ends with the tail of the whole log).
    pub status: i32,
    /// Its stdout and stderr, line by line.
    pub output: Vec<String>,
    /// How long it ran, in seconds (as measured where it ran).
    pub secs: f64,
    /// The log of the whole run it was part of.
    pub log: Option<PathBuf>,
    /// Where it ran: "direct" or "sandbox" (see [`Testbed::name`](crate::Testbed::name)).
    pub testbed: &'static str,
}

impl ScenarioResult {
    /// Whether the scenario exited with status 0.
    pub fn passed(&self) -> bool {
        self.status == 0
    }

    /// The output lines that start with the word `DMAVM`.
    pub fn dmavm_lines(&self) -> impl Iterator<Item = &str> {
        self.output.iter().map(|l| l.trim()).filter(|l| l.split_whitespace().next() == Some("DMAVM"))
    }

    /// Every `key=value` word of every `DMAVM` line, in output order (words
    /// without `=`, such as the `init` in `DMAVM init uptime=...`, are tags
    /// and skipped).
    pub fn dmavm_pairs(&self) -> Vec<(&str, &str)> {
        self.dmavm_lines()
            .flat_map(|l| l.split_whitespace().skip(1))
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .collect()
    }

    /// The value of the last `key=value` with this key on a `DMAVM` line.
    pub fn dmavm_value(&self, key: &str) -> Option<&str> {
        self.dmavm_pairs().into_iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// A report for assertion messages: name, status, time, log and output.
impl fmt::Display for ScenarioResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            STATUS_UNFINISHED => "unfinished".to_string(),
            STATUS_TIMEOUT => "timed out (124)".to_string(),
            s => s.to_string(),
        };
        write!(f, "scenario {} ({}): status {status} after {:.2}s", self.name, self.testbed, self.secs)?;
        if let Some(log) = &self.log {
            write!(f, " (log {})", log.display())?;
        }
        writeln!(f)?;
        for line in &self.output {
            writeln!(f, "  | {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lines: &[&str]) -> ScenarioResult {
        ScenarioResult {
            name: "t".into(),
            status: 0,
            output: lines.iter().map(|s| s.to_string()).collect(),
            secs: 0.0,
            log: None,
            testbed: "direct",
        }
    }

    #[test]
    fn pairs_and_values() {
        let r = result(&[
            "DMAVM init uptime=1.5 cpus=1 kernel=6.12",
            "noise DMAVM x=1",
            "  DMAVM cpus=2 a=b=c =v\r",
            "DMAVMx y=1",
        ]);
        assert_eq!(
            r.dmavm_pairs(),
            vec![("uptime", "1.5"), ("cpus", "1"), ("kernel", "6.12"), ("cpus", "2"), ("a", "b=c")]
        );
        assert_eq!(r.dmavm_value("cpus"), Some("2"));
        assert_eq!(r.dmavm_value("x"), None);
        assert_eq!(r.dmavm_value("y"), None);
    }
}
