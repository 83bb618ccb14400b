#!/usr/bin/env python3
"""Runs cargo's test executables of one package, several at a time.

usage: run-test-binaries.py [--jobs N] [--first NAME,...] [--cwd DIR] EXE...
       cargo test --no-run --message-format=json ... |
         run-test-binaries.py [--jobs N] [--first NAME,...] [--cwd DIR] --cargo-json

Each guest test binary boots its own emulated host (L1), and inside it the
scenarios run one after another on one emulated vCPU: one binary keeps one
host core busy. Run one after another, as `cargo test` runs binaries, they
leave the other cores idle for most of the suite. This runs up to --jobs
binaries at once (default: the host's cores), the ones named by --first
before the others (the longest, so that the short ones fill the gaps at
the end), each with DIR as its working directory (cargo's: the package's
folder). A line says when each starts. With --cargo-json the executables are the integration-test
targets (`tests/*.rs`) in cargo's JSON messages on standard input. A
binary's output is printed whole when it ends, never
interleaved, then one line per binary with its status and time.

Exit status: 0 when every binary exited 0, else 1 (every binary still
runs: one report for all of them); 2 for usage errors.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def order(exes, first):
    """`exes` with the ones whose test name is in `first` first, in that order."""
    by_name = {test_name(e): e for e in exes}
    head = [by_name[n] for n in first if n in by_name]
    return head + [e for e in exes if e not in head]


def test_name(exe):
    """cargo's executable `deps/NAME-HASH` is test target NAME."""
    base = os.path.basename(exe)
    return base.rsplit("-", 1)[0] if "-" in base else base


def integration_tests(lines):
    """The executables of integration-test targets in cargo's JSON messages."""
    exes = []
    for line in lines:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("kind") == ["test"] \
                and msg.get("executable"):
            exes.append(msg["executable"])
    return exes


def main():
    ap = argparse.ArgumentParser(description="Run test executables several at a time.")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--first", default="", help="comma-separated test names to start first")
    ap.add_argument("--cwd", default=".", help="working directory of every binary")
    ap.add_argument("--cargo-json", action="store_true",
                    help="read the executables from cargo's JSON messages on standard input")
    ap.add_argument("exes", nargs="*")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.cargo_json:
        args.exes += integration_tests(sys.stdin)
    if not args.exes:
        ap.error("no test executables (none named, none in cargo's messages)")
    missing = [e for e in args.exes if not os.access(e, os.X_OK)]
    if missing:
        ap.error("not executable: " + ", ".join(missing))

    queue = order(args.exes, [n for n in args.first.split(",") if n])
    lock = threading.Lock()
    results = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                exe = queue.pop(0)
                print(f"     Started tests/{test_name(exe)}.rs", flush=True)
            start = time.monotonic()
            proc = subprocess.run([exe], cwd=args.cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, check=False)
            took = time.monotonic() - start
            with lock:
                name = test_name(exe)
                sys.stdout.write(f"\n     Ran tests/{name}.rs ({exe}) in {took:.0f} s\n")
                sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
                sys.stdout.flush()
                results.append((name, proc.returncode, took))

    threads = [threading.Thread(target=worker) for _ in range(min(args.jobs, len(queue)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    failed = [r for r in results if r[1] != 0]
    print(f"\nrun-test-binaries: {len(results)} binaries, {args.jobs} at a time:")
    for name, rc, took in sorted(results, key=lambda r: -r[2]):
        verdict = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(f"  {name:<24} {verdict:<18} {took:6.0f} s")
    if failed:
        print("run-test-binaries: failed: " + ", ".join(r[0] for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
