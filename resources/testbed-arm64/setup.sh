#!/bin/bash
# setup.sh - install what the arm64 sandbox of the test bed needs on the
# (x86_64) host: qemu-system-aarch64 (Debian's qemu-system-arm; no firmware,
# the kernel is booted with -kernel), the aarch64 cross compiler and C library
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: the static KVM probe, and the
# linker of the aarch64 dmavm), and the Rust target aarch64-unknown-linux-gnu.
# The arm64 guest packages themselves (kernel, busybox) are fetched, never
# installed, by resources/guest/arm64/fetch.sh.
# Idempotent: does nothing (no apt-get, no rustup) when everything is there.
# Called by resources/setup.sh.
# usage: resources/testbed-arm64/setup.sh
set -euo pipefail

PACKAGES=(qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross file)
TARGET=aarch64-unknown-linux-gnu
die() { echo "testbed-arm64/setup.sh: error: $*" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "testbed-arm64/setup.sh: installing ${missing[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo; install as root: ${missing[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -q || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}"
fi

# The Rust target for the aarch64 dmavm. Not fatal here (the x86 test bed does
# not need it): building the aarch64 dmavm fails later with rustc's message.
if command -v rustup >/dev/null; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "testbed-arm64/setup.sh: rustup target add $TARGET" >&2
    rustup target add "$TARGET" >&2 \
      || echo "testbed-arm64/setup.sh: warning: rustup target add $TARGET failed" >&2
  fi
else
  echo "testbed-arm64/setup.sh: warning: no rustup; the aarch64 dmavm needs the Rust target $TARGET" >&2
fi
