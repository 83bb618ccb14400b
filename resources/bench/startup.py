#!/usr/bin/env python3
"""VMM start-up benchmark: process start to exit, and peak RSS.

Runs dmavm with the `exit-first` payload (exits at its first instruction)
and the `byte-exit` payload (prints one byte, then exits), and QEMU's
microvm with an equivalent 16-byte real-mode firmware image that prints one
byte and exits through isa-debug-exit, and the KVM floor (kvm-floor.c: only
creates a VM, 64 MiB of memory and one vCPU, runs it to its first exit and
closes it), side by side in one run, runs alternating, and prints a
Markdown table of medians. Usage:

    resources/bench/startup.py [--runs 20] [--qemu PATH] [--static] [--out FILE]

Needs a usable /dev/kvm, a release build of dmavm (built here if missing)
and the project's QEMU (build/qemu-x86, Debian 13's, which
resources/setup.sh fetches; run through its own loader, without the shell
wrapper, so that QEMU's figure holds no extra exec) or --qemu PATH.
"""
import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QEMU_DIST = os.path.join(REPO, "build", "qemu-x86", "dist")

# Real mode at the reset vector 0xfffffff0 (last 16 bytes of the firmware):
#   mov al,'x' ; mov dx,0x3f8 ; out dx,al ; xor al,al ; out 0xf4,al ; hlt ; jmp $-1
# (isa-debug-exit turns the 0 into QEMU exit status 1.)
QEMU_RESET_CODE = bytes([0xB0, 0x78, 0xBA, 0xF8, 0x03, 0xEE, 0x30, 0xC0, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])


def project_qemu():
    """The command prefix that runs the project's QEMU through its own
    loader, libraries and firmware, or None when it is not fetched."""
    binary = os.path.join(QEMU_DIST, "bin", "qemu-system-x86_64")
    if not os.access(binary, os.X_OK):
        return None
    lib = os.path.join(QEMU_DIST, "lib")
    return [os.path.join(lib, "ld-linux-x86-64.so.2"), "--library-path", lib, binary,
            "-L", os.path.join(QEMU_DIST, "share")]


def measure_once(measurer, cmd):
    """Returns (seconds, peak RSS KiB, exit code) of one run."""
    res = subprocess.run([measurer] + cmd, capture_output=True, text=True, check=True)
    if "error" in res.stderr.lower() or "kvm-floor:" in res.stderr:
        sys.exit(f"startup.py: {' '.join(cmd)} failed: {res.stderr.strip()}")
    secs, kib, code = res.stdout.split()
    return float(secs), int(kib), int(code)


def measure_alternating(measurer, cmds, runs):
    """Runs every command of `cmds` once per round, `runs` rounds; returns
    per command (median seconds, median peak RSS KiB, exit codes seen)."""
    seen = [([], [], set()) for _ in cmds]
    for _ in range(runs):
        for cmd, (times, rss, codes) in zip(cmds, seen):
            secs, kib, code = measure_once(measurer, cmd)
            times.append(secs)
            rss.append(kib)
            codes.add(code)
    return [(statistics.median(t), statistics.median(r), c) for t, r, c in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--qemu", help="a qemu-system-x86_64 to measure instead of the project's")
    ap.add_argument("--static", action="store_true",
                    help="also measure dmavm statically linked and not position-independent "
                         "(built in build/target-static-nopie)")
    ap.add_argument("--out", help="append the Markdown result to this file")
    args = ap.parse_args()

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        sys.exit("startup.py: /dev/kvm is missing or not accessible")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dmavm"], cwd=REPO, check=True)
    dmavm = os.path.join(REPO, "target", "release", "dmavm")
    work = tempfile.mkdtemp(prefix="dmavm-bench-")
    measurer = os.path.join(work, "measure")
    subprocess.run(["cc", "-O2", "-o", measurer, os.path.join(os.path.dirname(__file__), "measure.c")], check=True)
    floor = os.path.join(work, "kvm-floor")
    subprocess.run(["cc", "-O2", "-o", floor, os.path.join(os.path.dirname(__file__), "kvm-floor.c")], check=True)
    subprocess.run([os.path.join(REPO, "resources", "payloads", "build.sh"), work], check=True)
    fw = os.path.join(work, "qemu-fw.bin")
    with open(fw, "wb") as f:  # QEMU wants a multiple of 64 KiB
        image = bytearray(b"\xf4" * 65536)
        image[-16:-16 + len(QEMU_RESET_CODE)] = QEMU_RESET_CODE
        f.write(image)

    binaries = [("dmavm", dmavm)]
    if args.static:
        target = os.path.join(REPO, "build", "target-static-nopie")
        env = dict(os.environ, CARGO_TARGET_DIR=target,
                   RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static")
        # --target keeps the flags off the build scripts and proc-macros,
        # which are built for the host and cannot be static.
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "dmavm", "--target", "x86_64-unknown-linux-gnu"],
                       cwd=REPO, env=env, check=True)
        binaries.append(("dmavm static", os.path.join(target, "x86_64-unknown-linux-gnu", "release", "dmavm")))
    rows = []
    for label, binary in binaries:
        for name in ["exit-first", "byte-exit"]:
            cmd = [binary, "run", "--payload", os.path.join(work, name + ".bin"), "--memory", "64M"]
            rows.append((f"{label}, `{name}` payload", cmd))
    floor_row = len(rows)
    rows.append(("KVM floor (`kvm-floor.c`: VM, 64 MiB, one vCPU, first exit, close)", [floor]))
    qemu = project_qemu() if args.qemu is None else [args.qemu]
    if qemu:
        cmd = qemu + ["-M", "microvm", "-enable-kvm", "-m", "64M", "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-bios", fw,
               "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
        rows.append(("QEMU microvm, 16-byte firmware", cmd))
    else:
        sys.exit(f"startup.py: no QEMU to compare with: {QEMU_DIST} is missing (run resources/setup.sh) "
                 "and --qemu was not given")
    results = measure_alternating(measurer, [cmd for _, cmd in rows], args.runs)

    base = results[-1][0]
    floor_t = results[floor_row][0]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Start-up, {args.runs} runs each, alternating, {stamp}, "
             f"`resources/bench/startup.py --runs {args.runs}{' --static' if args.static else ''}`", "",
             "| what | median start to exit | median peak RSS | exit status | vs QEMU | / KVM floor |",
             "|---|---|---|---|---|---|"]
    for (label, _), (t, rss, codes) in zip(rows, results):
        ratio = f"{base / t:.1f}x faster" if base and t != base else "1x"
        lines.append(f"| {label} | {t * 1e3:.2f} ms | {rss / 1024:.1f} MiB | {sorted(codes)} | {ratio} | "
                     f"{t / floor_t:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
