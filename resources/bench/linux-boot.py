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

import sandbox_bench


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    runs, bed = sandbox_bench.run("bench-linux-boot")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Linux boot to init's first line, {stamp}, `resources/bench/linux-boot.py`; {bed}",
             "", "| kernel format | dmavm median (runs) | QEMU microvm median (runs) | QEMU / dmavm |",
             "|---|---|---|---|"]
    for fmt, label in [("vmlinux", "PVH vmlinux"), ("vmlinuz", "bzImage")]:
        d, q = runs.get(("dmavm", fmt), []), runs.get(("qemu", fmt), [])
        if not d or not q:
            continue
        lines.append(sandbox_bench.median_row(label, d, q, "s", higher_is_better=False))
    text = "\n".join(lines) + "\n"
    print(text)
    sandbox_bench.append(args.out, text)


if __name__ == "__main__":
    main()
