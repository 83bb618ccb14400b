"""Shared by the test-bed benchmarks: run one benchmark scenario in the
test bed (an L1 image that also carries QEMU) and collect its
`BENCH <vmm> <label> <value>` lines."""
import os
import statistics
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(scenario, timeout_secs=1800, extra_lines=(), scenario_env=()):
    """Returns ({(vmm, label): [values]}, test-bed description). Lines that
    start with a word of `extra_lines` are collected whole (without that
    word) under that word as key. `scenario_env` holds (NAME, value) pairs
    for the scenario's environment in L1."""
    env = dict(os.environ, DMAVM_L1_WITH_QEMU="1", DMAVM_SCENARIO_TIMEOUT=str(timeout_secs))
    env_args = [a for name, value in scenario_env for a in ("--env", f"{name}={value}")]
    res = subprocess.run(["cargo", "run", "-q", "--release", "-p", "dmavm-tests", "--bin", "testbed", "--",
                          *env_args, scenario], cwd=REPO, env=env, capture_output=True, text=True)
    runs = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in extra_lines:
            runs.setdefault(parts[0], []).append(line[len(parts[0]):].strip())
            continue
        if len(parts) == 4 and parts[0] == "BENCH":
            runs.setdefault((parts[1], parts[2]), []).append(float(parts[3]))
    if res.returncode != 0 or not runs:
        sys.exit(f"{scenario}: the benchmark scenario failed:\n{res.stderr}\n{res.stdout[-3000:]}")
    bed = next((l for l in res.stderr.splitlines() if l.startswith("testbed: running on")), "")
    return runs, bed[len("testbed: "):]


def median_row(label, ours, theirs, unit, higher_is_better):
    """A Markdown table row: medians (with the runs) and theirs/ours or ours/theirs."""
    om, tm = statistics.median(ours), statistics.median(theirs)
    ratio = om / tm if higher_is_better else tm / om
    runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    return f"| {label} | {om:.2f} {unit} ({runs(ours)}) | {tm:.2f} {unit} ({runs(theirs)}) | {ratio:.2f} |"


def append(path, text):
    if path:
        with open(path, "a") as f:
            f.write("\n" + text)
