//! A small stderr logger: `dmavm: <level>: <message>`.

use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level().as_str().to_ascii_lowercase();
        // Nothing useful can be done if stderr is gone.
        let _ = writeln!(std::io::stderr().lock(), "dmavm: {level}: {}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger at `level`.
pub fn init(level: log::LevelFilter) {
    // Fails only if a logger is already set, in which case that one stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The most characters of an error report: several pieces of user text,
/// each shortened, fit easily.
const MAX_LINE: usize = 2000;

/// Prints the one-line error report for a failed run.
pub fn report_error(message: &str) {
    // The message may hold user text that did not go through `shown`: it
    // stays one line without terminal controls whatever it holds.
    let line = dmavm_machine::user_text::one_line(message, MAX_LINE);
    let _ = writeln!(std::io::stderr().lock(), "dmavm: error: {line}");
}

/// Prints the configuration checks' warnings as `dmavm: warning: [CODE]
/// ...` on stderr, unless `--log-level` is below `warn`.
pub fn report_warnings(findings: &[dmavm_machine::checks::Finding]) {
    if log::max_level() < log::LevelFilter::Warn {
        return;
    }
    let mut err = std::io::stderr().lock();
    for f in findings.iter().filter(|f| f.severity == dmavm_machine::checks::Severity::Warning) {
        // Nothing useful can be done if stderr is gone.
        let _ = writeln!(err, "dmavm: warning: {f}");
    }
}
