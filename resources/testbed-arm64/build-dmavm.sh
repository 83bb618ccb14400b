#!/bin/bash
# build-dmavm.sh - cross-build the static aarch64 dmavm that the arm64 sandbox
# (L1) carries as /bin/dmavm:
#   build/target-aarch64/aarch64-unknown-linux-gnu/release/dmavm
# (the path resources/testbed-arm64/build-l1.sh is given by the test bed,
# tests/src/arm64.rs). Rust target aarch64-unknown-linux-gnu, Debian's
# aarch64-linux-gnu-gcc as linker, `-C target-feature=+crt-static` (the L1 has
# no shared libraries), release profile, its own target dir so it never
# contends with the host builds. Cargo makes a repeat a no-op.
# Needs resources/testbed-arm64/setup.sh (cross gcc, rust target).
# Prints the binary's path on stdout.
# usage: resources/testbed-arm64/build-dmavm.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=$ROOT/build/target-aarch64
command -v aarch64-linux-gnu-gcc >/dev/null \
  || { echo "build-dmavm.sh: error: aarch64-linux-gnu-gcc not found (run resources/setup.sh)" >&2; exit 1; }
cd "$ROOT"
# CARGO_ENCODED_RUSTFLAGS from an outer cargo would override RUSTFLAGS
env -u CARGO_ENCODED_RUSTFLAGS \
  CARGO_TARGET_DIR="$TARGET_DIR" \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  RUSTFLAGS='-C target-feature=+crt-static' \
  "${CARGO:-cargo}" build --release -p dmavm --target "$TARGET" >&2
echo "$TARGET_DIR/$TARGET/release/dmavm"
