#!/usr/bin/env python3
"""PCI hot-plug latency: dmavm against QEMU q35, in the same L1.

Runs tests/scenarios/bench-hotplug.sh in one test-bed L1: a disk behind a
virtio-iommu plugged into a running Linux guest and removed again, RUNS
times per VM, two dmavm and two QEMU VMs alternating. `add`: from the
request (dmavm ctl add-device / QMP device_add) to the guest's block
device appearing (polled by the guest every 0.2 s); `remove`: from the
request to the removal done (dmavm's reply, sent once the guest ejected
the slot / QEMU's DEVICE_DELETED event). Prints a Markdown table. Usage:

    resources/bench/hotplug.py [--runs N] [--out FILE]

In the nested sandbox absolute times are emulation times; only the ratio
of runs made side by side means something.
"""
import argparse
import datetime

import sandbox_bench


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="add/remove cycles per VM (default 5)")
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    runs, bed = sandbox_bench.run("bench-hotplug", scenario_env=[("BENCH_RUNS", str(args.runs))])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"PCI hot-plug of a translated disk, {stamp}, `resources/bench/hotplug.py --runs {args.runs}`; {bed}",
             "", "| step | dmavm median (runs) | QEMU q35 median (runs) | QEMU / dmavm |", "|---|---|---|---|"]
    for step, label in [("add", "add-device / device_add to the guest's block device"),
                        ("remove", "remove-device / device_del to removal done")]:
        ours, theirs = runs.get(("dmavm", step), []), runs.get(("qemu", step), [])
        if ours and theirs:
            lines.append(sandbox_bench.median_row(label, ours, theirs, "ms", higher_is_better=False))
        else:
            lines.append(f"| {label} | {len(ours)} runs | {len(theirs)} runs | - |")
    text = "\n".join(lines)
    print(text)
    sandbox_bench.append(args.out, text)


if __name__ == "__main__":
    main()
