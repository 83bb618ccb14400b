#!/usr/bin/env python3
"""Guest disk throughput behind a virtio-iommu: dmavm against QEMU, in the
same L1 of the test bed.

A 256 MiB raw virtio-pci disk read sequentially by the guest (`dd bs=1M`,
guest cache dropped before each read, 3 reads per boot, --rounds boots per
VMM and mode (default 2), alternating) next to a virtio-iommu-pci, in three modes: `direct`
(dmavm `direct-ram-access=on`; QEMU `iommu_platform=off`), `lazy` (the disk
translated, the guest's default lazy invalidation) and `strict`
(`iommu.strict=1`); see tests/scenarios/bench-iommu-blk.sh. With
`--iommu vtd` the IOMMU is Intel VT-d (dmavm `--iommu type=vtd`, QEMU
`-device intel-iommu`, the guest with `intel_iommu=on`) and a fourth mode,
`pt` (`iommu=pt`: the guest's identity domain), runs. Prints a Markdown
table of medians, and each mode's cost relative to direct: over every
read, and over the warm reads only (the second and third of each boot:
the first read after a boot is slower for both VMMs, and which side of a
median it lands on moves a share by 0.1-0.2).

    resources/bench/iommu-disk-read.py [--iommu virtio|vtd] [--rounds N] [--modes direct,MODE...] [--out FILE]

In the nested sandbox absolute figures are emulation speeds; compare ratios.
"""
import argparse
import datetime
import statistics

import sandbox_bench

MODES = {"virtio": ["direct", "lazy", "strict"], "vtd": ["direct", "lazy", "strict", "pt"]}
# Reads per boot (resources/guest/checks/ddread.sh), in order.
READS_PER_BOOT = 3


def warm(values, rounds):
    """The reads after the first of each boot; None unless every boot of
    the `rounds` gave all its reads (then the order says which is which)."""
    if len(values) != READS_PER_BOOT * rounds:
        return None
    return [v for i, v in enumerate(values) if i % READS_PER_BOOT]


def share_rows(modes, runs, pick):
    """One row per translated mode: each VMM's median of `pick(values)`
    in that mode over its median in direct."""
    rows = []
    for mode in modes[1:]:
        share = []
        for vmm in ("dmavm", "qemu"):
            base, this = pick(runs.get((vmm, "direct"), [])), pick(runs.get((vmm, mode), []))
            share.append(f"{statistics.median(this) / statistics.median(base):.2f}" if base and this else "-")
        rows.append(f"| {mode} | {share[0]} | {share[1]} |")
    return rows
IOMMU_NAME = {"virtio": "a virtio-iommu-pci", "vtd": "an Intel VT-d unit (QEMU: intel-iommu)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iommu", choices=sorted(MODES), default="virtio", help="the IOMMU (default virtio)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="boots per VMM and mode, 1 to 9 (default 2)")
    ap.add_argument("--modes", help="comma-separated modes to run, direct first (the shares are against it); "
                                    "default all of the IOMMU's: direct,lazy,strict (vtd: and pt)")
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 9:
        ap.error("--rounds must be 1 to 9")
    modes = MODES[args.iommu]
    if args.modes:
        chosen = args.modes.split(",")
        unknown = [m for m in chosen if m not in modes]
        if unknown or chosen[0] != "direct" or len(set(chosen)) != len(chosen):
            ap.error(f"--modes: direct first, then distinct modes of {args.iommu}: {', '.join(modes)}")
        modes = chosen
    runs, bed = sandbox_bench.run("bench-iommu-blk", timeout_secs=240 * len(modes) * (args.rounds + 1),
                                  extra_lines=("STATS",),
                                  scenario_env=[("BENCH_IOMMU", args.iommu), ("BENCH_ROUNDS", str(args.rounds)),
                                                ("BENCH_MODES", ",".join(modes))])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Guest sequential read of a 256 MiB virtio-pci disk next to {IOMMU_NAME[args.iommu]}, {stamp}, "
             f"`resources/bench/iommu-disk-read.py --iommu {args.iommu} --rounds {args.rounds}"
             f"{' --modes ' + args.modes if args.modes else ''}`; {bed}", "",
             "| mode | dmavm median (runs) | QEMU median (runs) | dmavm / QEMU |", "|---|---|---|---|"]
    for mode in modes:
        d, q = runs.get(("dmavm", mode), []), runs.get(("qemu", mode), [])
        if d and q:
            lines.append(sandbox_bench.median_row(mode, d, q, "MiB/s", higher_is_better=True))
    lines += ["", "| mode | dmavm: share of its direct median | QEMU: share of its direct median |", "|---|---|---|"]
    lines += share_rows(modes, runs, lambda values: values)
    lines += ["", "Warm reads only (the second and third of each boot; `-` where a boot gave fewer reads):", "",
              "| mode | dmavm: share of its direct median | QEMU: share of its direct median |", "|---|---|---|"]
    lines += share_rows(modes, runs, lambda values: warm(values, args.rounds))
    stats = sorted(set(runs.get("STATS", [])))
    if stats:
        lines += ["", "dmavm's `--stats` lines of the last boot of each mode:", "", "```"]
        last = {}
        for s in runs["STATS"]:
            last[s.split()[0]] = s
        lines += [last[m] for m in modes if m in last] + ["```"]
    text = "\n".join(lines) + "\n"
    print(text)
    sandbox_bench.append(args.out, text)


if __name__ == "__main__":
    main()
