#!/usr/bin/env bash
# fuzz-smoke.sh - every fuzz target (fuzz/README.md) for a short bounded
# time, starting from its checked-in corpus (copied: the checked-in seeds
# never grow). One line per target with libFuzzer's final numbers; exits
# non-zero if any target crashes, times out or runs out of memory, and
# says where the reproducer is.
# usage: resources/fuzz-smoke.sh [TARGET...]
#   FUZZ_SMOKE_SECONDS  time per target (default 20)
#   FUZZ_SMOKE_JOBS     targets at a time (default: the host's cores)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SMOKE_SECONDS:-20}
# Each input's CPU-time budget (fuzz/src/lib.rs): 100 ms in the
# campaign's plain build, ten times that here, where AddressSanitizer
# makes the same input two to seven times slower. That budget finds slow
# inputs; libFuzzer's wall-clock -timeout below only finds hangs, and is
# loose so that a loaded machine does not fail it.
export DMAVM_FUZZ_CPU_MS=${DMAVM_FUZZ_CPU_MS:-1000}
die() { echo "fuzz-smoke.sh: error: $*" >&2; exit 1; }
. "$root/resources/tools/fuzz-log-stats.sh"
"$root/resources/tools/install-fuzz.sh" || exit 1
cd "$root/fuzz" || die "no fuzz/ folder"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list) || die "cargo fuzz list failed"
fi
cargo +nightly fuzz build >/dev/null 2>&1 || die "cargo +nightly fuzz build failed (run it to see why)"
work=$root/build/fuzz-smoke
rm -rf "$work"
mkdir -p "$work"
# One target: its line (and, when it failed, how to reproduce) in
# $work/$t/report, libFuzzer's exit status in $work/$t/rc.
smoke_one() {
  local t=$1 log=$work/$1/log rc verdict
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp -r "corpus/$t/." "$work/$t/corpus/" 2>/dev/null || true
  cargo +nightly fuzz run "$t" "$work/$t/corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/$t/artifacts/" >"$log" 2>&1
  rc=$?
  fuzz_log_stats "$log"
  if [ $rc -eq 0 ]; then verdict=ok; else verdict="FAILED (exit $rc)"; fi
  {
    printf '%-18s %s: %s execs (%s/s), cov %s ft %s, corpus %s\n' \
      "$t" "$verdict" "$execs" "$rate" "$cov" "$ft" "$corp"
    if [ $rc -ne 0 ]; then
      grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -3 | sed 's/^/    /'
      for a in "$work/$t/artifacts/"*; do
        [ -e "$a" ] && echo "    reproduce: cd fuzz && cargo +nightly fuzz run $t $a"
      done
      echo "    log: $log"
    fi
  } >"$work/$t/report"
  echo $rc >"$work/$t/rc"
}

# Targets run FUZZ_SMOKE_JOBS at a time (default: one per core); each is
# one process on one core, and its CPU-time oracle does not count waiting.
parallel=${FUZZ_SMOKE_JOBS:-$(nproc)}
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SMOKE_JOBS=$parallel is not a positive number"
start=$SECONDS
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
  smoke_one "$t" &
done
wait
failed=0
for t in "${targets[@]}"; do
  cat "$work/$t/report" 2>/dev/null || echo "$t: no report (the run did not finish)"
  [ "$(cat "$work/$t/rc" 2>/dev/null)" = 0 ] || failed=1
done
echo "fuzz-smoke.sh: ${#targets[@]} targets in $((SECONDS - start)) s"
exit $failed
