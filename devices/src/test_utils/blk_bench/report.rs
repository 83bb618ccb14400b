//! The report's header: when, on what, how long.

/// `YYYY-MM-DD HH:MM UTC` from the system clock (civil-from-days, H. Hinnant).
pub fn utc_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// The host's CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `N CPUs, model`.
pub fn host() -> String {
    format!("{} CPUs, {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), cpu_model())
}

/// The measuring time per case: `DMAVM_BENCH_SECS` (default 3) when run
/// as `cargo bench` (`--bench` in the arguments), `None` when run as a
/// test (`cargo test --all-targets`: check every case once).
pub fn measure_time() -> Option<std::time::Duration> {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("DMAVM_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    bench.then(|| std::time::Duration::from_secs_f64(secs))
}
