#!/usr/bin/env bash
# install-fuzz.sh - what the fuzz runs need (fuzz/README.md): a nightly
# toolchain (cargo-fuzz builds with -Zsanitizer) and cargo-fuzz itself.
# Idempotent: returns at once when both are present.
# usage: resources/tools/install-fuzz.sh
set -euo pipefail
die() { echo "install-fuzz.sh: error: $*" >&2; exit 1; }
command -v rustup >/dev/null || die "rustup not found (install Rust with rustup first)"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 \
    || die "rustup toolchain install nightly failed"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || die "cargo install cargo-fuzz --locked failed"
fi
cargo fuzz --version >/dev/null 2>&1 || die "cargo fuzz does not run after installing it"
