#!/usr/bin/env bash
# fuzz-campaign.sh - the long fuzzing run whose numbers docs/fuzzing.md
# records: every target (or the ones named) for a fixed number of
# executions, one target per core at a time, each from its checked-in
# seeds plus whatever an earlier campaign left in its corpus.
#
# Built without a sanitizer and with debug assertions (integer overflow
# and debug_assert! checks on): the guest-facing code is safe Rust, whose
# out-of-bounds accesses panic anyway, and guest memory is an mmap that
# AddressSanitizer does not watch; without it the targets run two to
# seven times faster. The CI smoke run (fuzz-smoke.sh) keeps ASan.
# Each input is also held to 100 ms of CPU time (DMAVM_FUZZ_CPU_MS).
#
# usage: resources/fuzz-campaign.sh [TARGET...]
#   FUZZ_CAMPAIGN_RUNS  executions per target (default 10000000)
#   FUZZ_CAMPAIGN_JOBS  targets run at once (default: the number of CPUs)
# Results: build/fuzz-campaign/<target>/{corpus,artifacts,log}, and one
# line per target in build/fuzz-campaign/summary (also printed).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${FUZZ_CAMPAIGN_RUNS:-10000000}
jobs=${FUZZ_CAMPAIGN_JOBS:-$(nproc)}
die() { echo "fuzz-campaign.sh: error: $*" >&2; exit 1; }
. "$root/resources/tools/fuzz-log-stats.sh"
case $runs in '' | *[!0-9]*) die "FUZZ_CAMPAIGN_RUNS must be a number of executions, not '$runs'" ;; esac
case $jobs in '' | 0 | *[!0-9]*) die "FUZZ_CAMPAIGN_JOBS must be a positive number, not '$jobs'" ;; esac
"$root/resources/tools/install-fuzz.sh" || exit 1
cd "$root/fuzz" || die "no fuzz/ folder"
work=$root/build/fuzz-campaign
mkdir -p "$work"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list) || die "cargo fuzz list failed"
fi
# Its own target directory, so that the smoke run's ASan build and this
# one never overwrite each other.
cargo +nightly fuzz build -s none --debug-assertions --target-dir "$work/target" >"$work/build.log" 2>&1 ||
  die "the fuzz build failed: $work/build.log"
bins=$work/target/x86_64-unknown-linux-gnu/release

run_one() {
  local t=$1 dir=$work/$1 start rc
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -n "$root/fuzz/corpus/$t/"* "$dir/corpus/" 2>/dev/null || true
  start=$(date -u +%H:%M:%S)
  DMAVM_FUZZ_CPU_MS=100 /usr/bin/time -f 'wall_seconds: %e' \
    "$bins/$t" "$dir/corpus" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1
  rc=$?
  local execs rate rss wall cov ft corp verdict=ok
  fuzz_log_stats "$dir/log"
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/log" | tail -1)
  wall=$(sed -n 's/^wall_seconds: *//p' "$dir/log" | tail -1)
  [ $rc -eq 0 ] || verdict="FAILED (exit $rc, log $dir/log)"
  printf '%s start %s: %s executions, %s/s, %s s, cov %s, ft %s, corpus %s, peak RSS %s MB: %s\n' \
    "$t" "$start" "$execs" "$rate" "${wall:-?}" "$cov" "$ft" "$corp" "${rss:-?}" \
    "$verdict" | tee -a "$work/summary"
  return $rc
}
export -f run_one fuzz_log_stats
export root work runs bins

echo "fuzz-campaign.sh: ${#targets[@]} targets, $runs executions each, $jobs at a time" | tee -a "$work/summary"
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}
rc=$?
[ $rc -eq 0 ] || echo "fuzz-campaign.sh: a target failed; its reproducer is in build/fuzz-campaign/<target>/artifacts" >&2
exit $rc
