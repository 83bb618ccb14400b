//! A logger for tests that counts what a device logged: it keeps every
//! record, and tests pick theirs by a label only they use (tests share the
//! process-wide logger and run in parallel).

use std::sync::{Mutex, Once};

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        RECORDS.lock().unwrap().push((record.level(), record.args().to_string()));
    }

    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

/// Installs the capturing logger at every level (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in unit tests");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The records so far whose message contains `tag`, with their level.
pub fn records_with(tag: &str) -> Vec<(log::Level, String)> {
    RECORDS.lock().unwrap().iter().filter(|(_, m)| m.contains(tag)).cloned().collect()
}

/// How many of [`records_with`]`(tag)` are at `level` or more severe.
pub fn count_at_least(tag: &str, level: log::Level) -> usize {
    records_with(tag).iter().filter(|(l, _)| *l <= level).count()
}
