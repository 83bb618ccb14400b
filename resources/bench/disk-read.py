#!/usr/bin/env python3
"""Guest disk throughput: dmavm against QEMU, in the same L1 of the test bed.

A 256 MiB raw disk read sequentially by the guest (`dd bs=1M`, guest cache
dropped before each read, 3 reads per boot, 2 boots per VMM, alternating),
over virtio-mmio (QEMU: microvm with virtio-blk-device) and virtio-pci
(QEMU: q35 with virtio-blk-pci); see
tests/scenarios/bench-virtio-blk.sh. Prints a Markdown table of medians.

    resources/bench/disk-read.py [--out FILE]

In the nested sandbox absolute figures are emulation speeds; compare ratios.
"""
import argparse
import datetime

import sandbox_bench


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    runs, bed = sandbox_bench.run("bench-virtio-blk")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Guest sequential read of a 256 MiB disk, {stamp}, `resources/bench/disk-read.py`; {bed}", "",
             "| transport | dmavm median (runs) | QEMU median (runs) | dmavm / QEMU |", "|---|---|---|---|"]
    for transport in sorted({label for (_, label) in runs}):
        d, q = runs.get(("dmavm", transport), []), runs.get(("qemu", transport), [])
        if d and q:
            lines.append(sandbox_bench.median_row(transport, d, q, "MiB/s", higher_is_better=True))
    text = "\n".join(lines) + "\n"
    print(text)
    sandbox_bench.append(args.out, text)


if __name__ == "__main__":
    main()
