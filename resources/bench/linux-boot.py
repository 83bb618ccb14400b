#!/usr/bin/env python3
"""Linux boot benchmark: dmavm against QEMU microvm, in the same L1.

Boots the project's guest (Debian 6.12 cloud kernel, busybox initramfs,
`quiet`) to its init's first line, all inside one test-bed L1
(tests/scenarios/bench-linux-boot.sh), runs alternating between:
dmavm with the bzImage entered through PVH (decompressed by dmavm, from its
cache after a first cold boot), dmavm with the bzImage through the 64-bit
boot protocol (`DMAVM_BZIMAGE_ENTRY=long64`: the guest decompresses
itself), dmavm with the PVH vmlinux, and QEMU microvm with the bzImage and
with the vmlinux; same kernel, initramfs and command line. Prints Markdown
tables: boot times (median, min, max, the runs), the guest's own uptime at
that line against the boot time, and L1's KVM statistics at the guest's
first line (medians). Usage:

    resources/bench/linux-boot.py [--runs N] [--out FILE]

In the nested sandbox absolute times are emulation times (QEMU TCG under
L1's KVM); only the ratio of runs made side by side means something.
"""
import argparse
import datetime
import statistics

import sandbox_bench

VARIANTS = [
    ("dmavm", "vmlinuz-pvh", "bzImage through PVH (dmavm decompresses, cached)", "vmlinuz"),
    ("dmavm", "vmlinuz-long64", "bzImage through the 64-bit boot protocol", "vmlinuz"),
    ("dmavm", "vmlinux", "PVH vmlinux", "vmlinux"),
    ("dmavm", "vmlinuz-pvh-cold", "bzImage through PVH, first boot (decompresses, fills the cache)", "vmlinuz"),
    ("qemu", "vmlinuz", "QEMU microvm, bzImage", None),
    ("qemu", "vmlinux", "QEMU microvm, PVH vmlinux", None),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of each variant (default 10)")
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()
    runs, bed = sandbox_bench.run("bench-linux-boot", extra_lines=("KVMSTAT", "THP", "GUESTUP"),
                                  scenario_env=[("BENCH_RUNS", str(args.runs))])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Linux boot to init's first line, {stamp}, `resources/bench/linux-boot.py --runs {args.runs}`; "
             f"{bed}; L1 THP: {' '.join(runs.get('THP', []))}",
             "", "| VMM, kernel | median | min | max | max / min | QEMU microvm median / this | runs (s) |",
             "|---|---|---|---|---|---|---|"]
    for vmm, key, label, qemu_format in VARIANTS:
        xs = runs.get((vmm, key), [])
        if not xs:
            continue
        med = statistics.median(xs)
        q = runs.get(("qemu", qemu_format or key), [])
        ratio = f"{statistics.median(q) / med:.2f}" if q else "-"
        lines.append(f"| {'dmavm' if vmm == 'dmavm' else 'QEMU'}: {label} | {med:.2f} s | {min(xs):.2f} s | "
                     f"{max(xs):.2f} s | {max(xs) / min(xs):.2f} | {ratio} | {', '.join(f'{x:.2f}' for x in xs)} |")
    guest_up = {}
    for line in runs.get("GUESTUP", []):
        words = line.split()
        if len(words) == 3:
            try:
                guest_up.setdefault((words[0], words[1]), []).append(float(words[2]))
            except ValueError:
                pass
    if guest_up:
        lines += ["", "The guest's own uptime at that line (its clock starts in the kernel's early set-up; "
                  "the rest of each boot is the VMM, loading and what runs before), medians:",
                  "", "| VMM, kernel | boot (median) | guest uptime (median) | before the guest's clock |",
                  "|---|---|---|---|"]
        for vmm, key, label, _ in VARIANTS:
            xs, ups = runs.get((vmm, key), []), guest_up.get((vmm, key), [])
            if xs and ups:
                boot, up = statistics.median(xs), statistics.median(ups)
                lines.append(f"| {vmm}: {key} | {boot:.2f} s | {up:.2f} s | {boot - up:.2f} s |")
    stats = {}
    for line in runs.get("KVMSTAT", []):
        words = line.split()
        if len(words) < 2:
            continue
        for kv in words[2:]:
            name, _, value = kv.partition("=")
            if value.isdigit():
                stats.setdefault((words[0], words[1]), {}).setdefault(name, []).append(int(value))
    names = sorted({n for per in stats.values() for n in per})
    if names:
        lines += ["", "L1 KVM statistics when the guest's init printed its first line (medians over the runs):",
                  "", "| VMM, kernel | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for vmm, key, label, _ in VARIANTS:
            per = stats.get((vmm, key))
            if per:
                cells = [str(int(statistics.median(per[n]))) if n in per else "-" for n in names]
                lines.append(f"| {vmm}: {key} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    sandbox_bench.append(args.out, text)


if __name__ == "__main__":
    main()
