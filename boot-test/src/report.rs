//! What the harness tells: a progress line per finished run, the final
//! table, and the JSON and JUnit XML reports for CI.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::shard::Shard;
use super::verdict::{Check, Outcome};

/// One run's result (also what the inner harness of sandbox mode sends
/// back, one JSON line per run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `machine/variant`, or the machine's name when the matrix has no
    /// variants.
    pub name: String,
    /// The machine's name.
    pub machine: String,
    /// The variant's name.
    pub variant: Option<String>,
    /// The matrix file.
    pub matrix: String,
    /// The kernel command line.
    pub cmdline: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock seconds.
    pub secs: f64,
    /// The first check that failed.
    pub first_failure: Option<Check>,
    /// Every check judged, in order.
    pub checks: Vec<Check>,
    /// Its log, if kept.
    pub log: Option<String>,
    /// Its place among the runs of the whole matrix, before `--shard`
    /// took some (from 0), so that merged shards keep matrix order.
    #[serde(default)]
    pub position: Option<usize>,
    /// The drivers of the machine's devices and transports that the
    /// guest's kernel has neither built in nor loaded (`virtio_blk`,
    /// `virtio-mmio`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_drivers: Vec<String>,
    /// Whether its machine has network devices, and so the `net` check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub net: bool,
}

impl RunResult {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The kernel under test.
    pub kernel: String,
    /// SHA-256 of the kernel file, in hex.
    #[serde(default)]
    pub kernel_sha256: String,
    /// The guests' architecture (`x86_64`, `aarch64`).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// When the harness started, RFC 3339 in UTC.
    #[serde(default)]
    pub started: String,
    /// The shard of the matrix this report holds, if sharded.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Runs of the whole matrix before `--shard` took some (`--only`
    /// applied): what the merged shards must add up to.
    #[serde(default)]
    pub matrix_total: usize,
    /// "direct" or "sandbox".
    pub mode: String,
    /// VMs at a time.
    pub jobs: usize,
    /// Runs.
    pub total: usize,
    /// Runs that passed.
    pub passed: usize,
    /// Runs that did not.
    pub failed: usize,
    /// Wall-clock seconds of the whole matrix, preparation included.
    pub secs: f64,
    /// Sandbox mode: seconds until the emulated host was ready to run VMs.
    pub sandbox_ready_secs: Option<f64>,
    /// The runs, in matrix order.
    pub runs: Vec<RunResult>,
}

fn default_arch() -> String {
    "x86_64".into()
}

/// What a report says about the kernel and the matrix, besides its runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heading {
    /// The kernel, as given.
    pub kernel: String,
    /// Its SHA-256.
    pub kernel_sha256: String,
    /// The guests' architecture.
    pub arch: String,
    /// When the harness started (RFC 3339, UTC).
    pub started: String,
    /// The shard, if any.
    pub shard: Option<Shard>,
    /// Runs of the matrix before sharding.
    pub matrix_total: usize,
}

impl Report {
    /// A report of `runs`.
    pub fn new(
        heading: Heading,
        mode: &str,
        jobs: usize,
        secs: f64,
        ready: Option<f64>,
        runs: Vec<RunResult>,
    ) -> Self {
        let passed = runs.iter().filter(|r| r.passed()).count();
        Self {
            kernel: heading.kernel,
            kernel_sha256: heading.kernel_sha256,
            arch: heading.arch,
            started: heading.started,
            shard: heading.shard,
            matrix_total: heading.matrix_total,
            mode: mode.into(),
            jobs,
            total: runs.len(),
            passed,
            failed: runs.len() - passed,
            secs,
            sandbox_ready_secs: ready,
            runs,
        }
    }

    /// Pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The progress line after a run: `[3/11] 1 failed  NAME passed 31.2s`.
pub fn progress(done: usize, total: usize, failed: usize, r: &RunResult) -> String {
    let what = match &r.first_failure {
        Some(c) if !r.passed() => format!(" ({}: {})", c.name, c.detail),
        _ => String::new(),
    };
    format!("[{done}/{total}, {failed} failed] {} {} {:.1}s{what}", r.name, r.outcome.as_str(), r.secs)
}

/// The final table: run, result, seconds, first failing check.
pub fn table(report: &Report) -> String {
    let width = report.runs.iter().map(|r| r.name.len()).max().unwrap_or(3).max(3);
    let mut out = format!("{:width$}  {:7}  {:>7}  FIRST FAILING CHECK\n", "RUN", "RESULT", "SECONDS");
    for r in &report.runs {
        let first = match &r.first_failure {
            Some(c) => format!("{}: {}", c.name, c.detail),
            None => "-".into(),
        };
        let _ = writeln!(out, "{:width$}  {:7}  {:>7.1}  {first}", r.name, r.outcome.as_str(), r.secs);
    }
    let _ = write!(
        out,
        "{} of {} runs passed, {} failed ({} mode, {} at a time, {:.1}s",
        report.passed, report.total, report.failed, report.mode, report.jobs, report.secs
    );
    if let Some(t) = report.sandbox_ready_secs {
        let _ = write!(out, "; emulated host ready after {t:.1}s");
    }
    if let Some(shard) = report.shard {
        let _ = write!(out, "; shard {shard} of {} runs", report.matrix_total);
    }
    out.push_str(")\n");
    out
}

/// Escapes text for XML attributes and content; drops characters XML 1.0
/// cannot hold (control characters from a serial console).
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `testsuite` per matrix file, one `testcase` per run
/// (classname the matrix's stem and the machine, name the variant or
/// the machine); a failed run has a `failure` whose type is its first
/// failing check, a timed-out one `type="timeout"`, one the harness could
/// not run an `error`.
pub fn junit(report: &Report) -> String {
    let mut suites: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !suites.contains(&r.matrix.as_str()) {
            suites.push(&r.matrix);
        }
    }
    let count = |runs: &[&RunResult], o: Outcome| runs.iter().filter(|r| r.outcome == o).count();
    let all: Vec<&RunResult> = report.runs.iter().collect();
    let failures = count(&all, Outcome::Failed) + count(&all, Outcome::Timeout);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"dmavm boot-test\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" time=\"{:.3}\">",
        report.total,
        count(&all, Outcome::Error),
        report.secs
    );
    for suite in suites {
        let runs: Vec<&RunResult> = report.runs.iter().filter(|r| r.matrix == suite).collect();
        let stem =
            std::path::Path::new(suite).file_stem().map_or(suite.to_string(), |s| s.to_string_lossy().into());
        let time: f64 = runs.iter().map(|r| r.secs).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{time:.3}\">",
            xml_escape(&stem),
            runs.len(),
            count(&runs, Outcome::Failed) + count(&runs, Outcome::Timeout),
            count(&runs, Outcome::Error)
        );
        let _ = writeln!(
            x,
            "    <properties><property name=\"matrix\" value=\"{}\"/><property name=\"kernel\" value=\"{}\"/><property name=\"mode\" value=\"{}\"/></properties>",
            xml_escape(suite),
            xml_escape(&report.kernel),
            xml_escape(&report.mode)
        );
        for r in runs {
            let _ = write!(
                x,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&stem),
                xml_escape(&r.machine),
                xml_escape(r.variant.as_deref().unwrap_or(&r.machine)),
                r.secs
            );
            let first = r.first_failure.as_ref();
            let message = first.map_or(String::new(), |c| format!("{}: {}", c.name, c.detail));
            let body: String = r
                .checks
                .iter()
                .map(|c| format!("{} {}: {}\n", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail))
                .collect();
            let tag = match r.outcome {
                Outcome::Passed => None,
                Outcome::Failed => Some(("failure", first.map_or("failed", |c| c.name.as_str()))),
                Outcome::Timeout => Some(("failure", "timeout")),
                Outcome::Error => Some(("error", "harness")),
            };
            match tag {
                None => x.push('>'),
                Some((tag, kind)) => {
                    let _ = write!(
                        x,
                        ">\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>",
                        xml_escape(&message),
                        xml_escape(kind),
                        xml_escape(&body)
                    );
                }
            }
            let _ = write!(x, "\n      <system-out>cmdline: {}", xml_escape(&r.cmdline));
            if let Some(log) = &r.log {
                let _ = write!(x, "\nlog: {}", xml_escape(log));
            }
            x.push_str("</system-out>\n    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn run(name: &str, matrix: &str, outcome: Outcome, first: Option<(&str, &str)>) -> RunResult {
        let first = first.map(|(n, d)| Check { name: n.into(), passed: false, detail: d.into() });
        let (machine, variant) = match name.split_once('/') {
            Some((m, v)) => (m.to_string(), Some(v.to_string())),
            None => (name.to_string(), None),
        };
        RunResult {
            name: name.into(),
            machine,
            variant,
            matrix: matrix.into(),
            cmdline: "console=ttyS0 a<b".into(),
            outcome,
            secs: 1.5,
            checks: first.iter().cloned().collect(),
            first_failure: first,
            log: Some("logs/x.log".into()),
            position: None,
            missing_drivers: Vec::new(),
            net: false,
        }
    }

    pub(crate) fn report() -> Report {
        Report::new(
            Heading {
                kernel: "/k/bzImage".into(),
                kernel_sha256: "ab".repeat(32),
                arch: "x86_64".into(),
                started: "2026-12-06T04:00:00Z".into(),
                shard: None,
                matrix_total: 4,
            },
            "sandbox",
            2,
            10.0,
            Some(6.5),
            vec![
                run("pci/strict", "m/default.toml", Outcome::Passed, None),
                run(
                    "pci/lazy",
                    "m/default.toml",
                    Outcome::Failed,
                    Some(("devices", "rand \"x\" & <y> did not appear\u{1b}[0m")),
                ),
                run("hang", "m/broken.toml", Outcome::Timeout, Some(("boot", "killed at its 5s timeout"))),
                run("odd", "m/broken.toml", Outcome::Error, Some(("harness", "cannot start"))),
            ],
        )
    }

    #[test]
    fn json_round_trips_and_counts() {
        let r = report();
        assert_eq!((r.total, r.passed, r.failed), (4, 1, 3));
        let back: Report = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["runs"][1]["outcome"], "failed");
        assert_eq!(v["runs"][1]["first_failure"]["name"], "devices");
        assert_eq!(v["runs"][2]["outcome"], "timeout");
        assert_eq!(v["runs"][0]["first_failure"], serde_json::Value::Null);
    }

    #[test]
    fn junit_is_escaped_and_counted() {
        let x = junit(&report());
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"dmavm boot-test\" tests=\"4\" failures=\"2\" errors=\"1\""), "{x}");
        assert!(x.contains("<testsuite name=\"default\" tests=\"2\" failures=\"1\" errors=\"0\""), "{x}");
        assert!(x.contains("<testsuite name=\"broken\" tests=\"2\" failures=\"1\" errors=\"1\""), "{x}");
        assert!(x.contains("<testcase classname=\"default.pci\" name=\"lazy\" time=\"1.500\">"), "{x}");
        assert!(
            x.contains(
                "message=\"devices: rand &quot;x&quot; &amp; &lt;y&gt; did not appear[0m\" type=\"devices\""
            ),
            "{x}"
        );
        assert!(x.contains("<failure message=\"boot: killed at its 5s timeout\" type=\"timeout\">"), "{x}");
        assert!(x.contains("<error message=\"harness: cannot start\" type=\"harness\">"), "{x}");
        assert!(x.contains("<testcase classname=\"broken.hang\" name=\"hang\""), "{x}");
        assert!(x.contains("cmdline: console=ttyS0 a&lt;b"), "{x}");
        assert!(!x.contains('\u{1b}'));
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert_eq!(x.matches("</testcase>").count(), 4);
    }

    #[test]
    fn table_and_progress() {
        let r = report();
        let t = table(&r);
        assert!(
            t.starts_with(
                "RUN         RESULT   SECONDS  FIRST FAILING CHECK\npci/strict  passed       1.5  -\n"
            ),
            "{t}"
        );
        assert!(t.contains("hang        TIMEOUT      1.5  boot: killed at its 5s timeout\n"), "{t}");
        assert!(t.ends_with("1 of 4 runs passed, 3 failed (sandbox mode, 2 at a time, 10.0s; emulated host ready after 6.5s)\n"), "{t}");
        assert_eq!(progress(2, 4, 1, &r.runs[0]), "[2/4, 1 failed] pci/strict passed 1.5s");
        assert!(progress(2, 4, 1, &r.runs[2]).ends_with("hang TIMEOUT 1.5s (boot: killed at its 5s timeout)"));
    }
}
