#!/usr/bin/env bash
# test.sh - the README's second command and what CI runs: install the
# packages, check formatting and lints, run every test, then every fuzz
# target for a short bounded time from its checked-in seeds
# (resources/fuzz-smoke.sh, FUZZ_SMOKE_SECONDS each; any crash, timeout or
# OOM fails). The guest tests
# boot real Linux/payloads under real KVM: directly where the host has
# hardware KVM, else inside the nested QEMU sandbox (dmavm-tests says which).
# They fail, never skip, when neither can run.
# usage: resources/test.sh [extra cargo test arguments]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
resources/setup.sh
# Nightly and cargo-fuzz for the fuzz smoke run, installed up front so that
# a failure shows before the long tests (boot.sh does not need them).
resources/tools/install-fuzz.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# Every test binary runs even after one fails, so one run reports them all.
status=0
if [ $# -gt 0 ]; then
  cargo test --workspace --no-fail-fast "$@" || status=1
else
  cargo test --workspace --exclude dmavm-tests --no-fail-fast || status=1
  cargo test -p dmavm-tests --lib --bins --no-fail-fast || status=1
  cargo test -p dmavm-tests --doc --no-fail-fast || status=1
  # The guest tests: each binary keeps one core busy with its emulated
  # host, so they run DMAVM_TEST_JOBS at a time (default: the cores, at
  # most 4, as each emulated host takes 2 GiB), the longest first.
  jobs=${DMAVM_TEST_JOBS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}
  cargo test -p dmavm-tests --tests --no-run --message-format=json-render-diagnostics -q \
    | resources/tools/run-test-binaries.py --cargo-json --jobs "$jobs" --cwd tests \
        --first net,boot_test,iommu,arm64_linux,arm64_dma_pool,boot_test_arm64 \
    || status=1
fi
[ $status -eq 0 ] || { echo "test.sh: tests failed (above)" >&2; exit 1; }
# The tests against the kernel's TAP driver (the device's backend, and
# boot-test's net peer) make a network namespace and interfaces of their
# own, which needs root, as the guest tests do; they are marked ignored
# only so that a plain `cargo test` by a user passes.
[ "$(id -u)" = 0 ] || { echo "test.sh: the TAP and guest tests need root" >&2; exit 1; }
cargo test -p dmavm-devices --lib -- --ignored virtio::net::tap
cargo test -p dmavm-boot-test --lib -- --ignored net_peer
resources/fuzz-smoke.sh
