#!/usr/bin/env python3
"""Linux boot benchmark: dmavm against QEMU microvm, in the same L1.

Boots the project's guest (Debian 6.12 cloud kernel, busybox initramfs,
`quiet`) to its init's first line with dmavm and with
`qemu-system-x86_64 -enable-kvm -M microvm,rtc=on -cpu host`, same kernel,
initramfs and command line, bzImage and PVH vmlinux, runs alternating, all
inside one test-bed L1 (tests/scenarios/bench-linux-boot.sh). Prints a
Markdown table of medians and the ratio. Usage:

    resources/bench/linux-boot.py [--out FILE]

In the nested sandbox absolute times are emulation times (QEMU TCG under
L1's KVM); only the ratio of runs made side by side means something.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    env = dict(os.environ, DMAVM_L1_WITH_QEMU="1", DMAVM_SCENARIO_TIMEOUT="900")
    res = subprocess.run(["cargo", "run", "-q", "--release", "-p", "dmavm-tests", "--bin", "testbed", "--",
                          "bench-linux-boot"], cwd=REPO, env=env, capture_output=True, text=True)
    runs = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "BENCH":
            runs.setdefault((parts[1], parts[2]), []).append(float(parts[3]))
    if res.returncode != 0 or not runs:
        sys.exit(f"linux-boot.py: the benchmark scenario failed:\n{res.stderr}\n{res.stdout[-3000:]}")
    bed = next((l for l in res.stderr.splitlines() if l.startswith("testbed: running on")), "")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Linux boot to init's first line, {stamp}, `resources/bench/linux-boot.py`; {bed[len('testbed: '):]}",
             "", "| kernel format | dmavm median (runs) | QEMU microvm median (runs) | QEMU / dmavm |",
             "|---|---|---|---|"]
    for fmt, label in [("vmlinux", "PVH vmlinux"), ("vmlinuz", "bzImage")]:
        d, q = runs.get(("dmavm", fmt), []), runs.get(("qemu", fmt), [])
        if not d or not q:
            continue
        dm, qm = statistics.median(d), statistics.median(q)
        fmt_runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
        lines.append(f"| {label} | {dm:.2f} s ({fmt_runs(d)}) | {qm:.2f} s ({fmt_runs(q)}) | {qm / dm:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
