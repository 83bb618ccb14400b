//! `dmavm boot-test merge`: the --json reports of the shards of one
//! matrix (`--shard 1/N` ... `N/N`) as one report with the totals of an
//! unsharded run, the runs in matrix order.

use std::path::{Path, PathBuf};

use super::report::{Heading, Report};
use crate::error::Error;

fn refuse(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Merge(format!("{}: {why}", path.display()))
}

/// Merges `reports` (each with the file it was read from).
pub fn merge(reports: Vec<(PathBuf, Report)>) -> Result<Report, Error> {
    let Some((first_path, first)) = reports.first() else {
        return Err(Error::Merge("no reports to merge".into()));
    };
    let Some(count) = first.shard.map(|s| s.count) else {
        return Err(refuse(first_path, "not the report of a --shard run"));
    };
    let mut seen = vec![None::<&Path>; count as usize];
    for (path, r) in &reports {
        let Some(shard) = r.shard else { return Err(refuse(path, "not the report of a --shard run")) };
        if shard.count != count {
            return Err(refuse(path, format!("shard {shard}, but {} is of {count}", first_path.display())));
        }
        if r.kernel_sha256 != first.kernel_sha256 || r.arch != first.arch {
            return Err(refuse(path, format!("another kernel than {}'s", first_path.display())));
        }
        if r.matrix_total != first.matrix_total {
            return Err(refuse(
                path,
                format!(
                    "a matrix of {} runs, {}'s has {}",
                    r.matrix_total,
                    first_path.display(),
                    first.matrix_total
                ),
            ));
        }
        let slot = &mut seen[(shard.index - 1) as usize];
        if let Some(other) = slot {
            return Err(refuse(path, format!("shard {shard} again (also {})", other.display())));
        }
        *slot = Some(path);
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(i, _)| format!("{}/{count}", i + 1))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Merge(format!("shard {} missing", missing.join(", "))));
    }
    let mut runs: Vec<_> = reports.iter().flat_map(|(_, r)| r.runs.iter().cloned()).collect();
    runs.sort_by_key(|r| r.position.unwrap_or(usize::MAX));
    if runs.len() != first.matrix_total {
        return Err(Error::Merge(format!(
            "the shards hold {} runs, the matrix {}: a shard did not finish",
            runs.len(),
            first.matrix_total
        )));
    }
    let modes: Vec<&str> = reports.iter().map(|(_, r)| r.mode.as_str()).collect();
    let mode = if modes.iter().all(|m| *m == modes[0]) { modes[0] } else { "mixed" };
    let started = reports.iter().map(|(_, r)| r.started.as_str()).min().unwrap_or_default().to_string();
    // The shards ran side by side: the longest is the matrix's wall time.
    let secs = reports.iter().map(|(_, r)| r.secs).fold(0.0, f64::max);
    let ready = reports.iter().filter_map(|(_, r)| r.sandbox_ready_secs).reduce(f64::max);
    let jobs = reports.iter().map(|(_, r)| r.jobs).max().unwrap_or(1);
    let heading = Heading {
        kernel: first.kernel.clone(),
        kernel_sha256: first.kernel_sha256.clone(),
        arch: first.arch.clone(),
        started,
        shard: None,
        matrix_total: first.matrix_total,
    };
    Ok(Report::new(heading, mode, jobs, secs, ready, runs))
}

/// Reads a --json report.
pub fn read(path: &Path) -> Result<Report, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| refuse(path, e))?;
    serde_json::from_str(&text).map_err(|e| refuse(path, format!("not a dmavm boot-test --json report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;
    use crate::shard::Shard;

    /// The fake report cut into shards as `--shard` would.
    fn shards(count: u32) -> Vec<(PathBuf, Report)> {
        let whole = report();
        (1..=count)
            .map(|index| {
                let shard = Shard { index, count };
                let mut r = whole.clone();
                r.shard = Some(shard);
                r.runs = whole
                    .runs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| shard.holds(&x.name))
                    .map(|(i, x)| {
                        let mut x = x.clone();
                        x.position = Some(i);
                        x
                    })
                    .collect();
                let mut r = Report::new(
                    Heading {
                        kernel: r.kernel.clone(),
                        kernel_sha256: r.kernel_sha256.clone(),
                        arch: r.arch.clone(),
                        started: r.started.clone(),
                        shard: r.shard,
                        matrix_total: r.matrix_total,
                    },
                    &r.mode,
                    r.jobs,
                    r.secs,
                    r.sandbox_ready_secs,
                    r.runs,
                );
                r.secs = f64::from(index);
                (PathBuf::from(format!("s{index}.json")), r)
            })
            .collect()
    }

    #[test]
    fn merged_shards_are_the_whole_report() {
        let whole = report();
        for count in [1, 2, 3, 5] {
            let mut parts = shards(count);
            parts.reverse();
            let m = merge(parts).unwrap();
            assert_eq!((m.total, m.passed, m.failed), (whole.total, whole.passed, whole.failed));
            let names = |r: &Report| r.runs.iter().map(|x| (x.name.clone(), x.outcome)).collect::<Vec<_>>();
            assert_eq!(names(&m), names(&whole), "{count} shards");
            assert_eq!(m.secs, f64::from(count));
            assert_eq!(m.shard, None);
        }
    }

    #[test]
    fn refuses_what_is_not_one_sharded_matrix() {
        let err = |parts: Vec<(PathBuf, Report)>| merge(parts).unwrap_err().to_string();
        let mut parts = shards(3);
        parts.remove(1);
        assert_eq!(err(parts), "merge: shard 2/3 missing");
        let mut parts = shards(3);
        parts.push(parts[0].clone());
        assert!(err(parts).contains("again (also s1.json)"));
        let mut parts = shards(3);
        parts[2].1.kernel_sha256 = "cd".into();
        assert!(err(parts).starts_with("merge: s3.json: another kernel"));
        let mut parts = shards(2);
        parts[1].1.shard = Some(Shard { index: 2, count: 4 });
        assert!(err(parts).contains("shard 2/4, but s1.json is of 2"));
        assert_eq!(
            err(vec![(PathBuf::from("w.json"), report())]),
            "merge: w.json: not the report of a --shard run"
        );
        let mut parts = shards(2);
        let i = parts.iter().position(|(_, r)| !r.runs.is_empty()).unwrap();
        parts[i].1.runs.pop();
        assert!(err(parts).contains("a shard did not finish"));
    }
}
