# fuzz-log-stats.sh - sourced by the fuzz scripts: fuzz_log_stats LOG
# sets execs, rate, cov, ft and corp from a libFuzzer log run with
# -print_final_stats=1 ('?' where the log does not say).
fuzz_log_stats() {
  local log=$1 last
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -aE '^#[0-9]+[[:space:]]' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  execs=${execs:-?} rate=${rate:-?} cov=${cov:-?} ft=${ft:-?} corp=${corp:-?}
}
