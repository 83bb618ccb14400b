#!/bin/bash
# fetch-qemu.sh - Debian's arm64 QEMU (qemu-system-arm:arm64) with the
# shared libraries it needs, downloaded (never installed) through the
# private arm64 apt state of resources/guest/arm64/fetch.sh and unpacked
# into build/qemu-arm64/l1 (bin/qemu-system-aarch64, lib/ with the loader
# and exactly the libraries it needs), for the benchmark that compares dmavm with
# `qemu-system-aarch64 -M virt,gic-version=3 -cpu host -enable-kvm` inside
# the arm64 sandbox (build-l1.sh carries it when it exists, as /qemu, run
# through its own dynamic loader: /qemu/lib/ld-linux-aarch64.so.1
# --library-path /qemu/lib /qemu/bin/qemu-system-aarch64).
# Only lib* packages of the dependency closure are unpacked (no maintainer
# scripts run). Does nothing when build/qemu-arm64/l1 is complete.
# usage: resources/testbed-arm64/fetch-qemu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
APTDIR=$ROOT/build/apt-arm64
OUT=$ROOT/build/qemu-arm64
DEBS=$ROOT/build/cache/qemu-arm64
die() { echo "fetch-qemu.sh: error: $*" >&2; exit 1; }
[ -x "$OUT/l1/bin/qemu-system-aarch64" ] && [ -f "$OUT/complete" ] && exit 0
[ -d "$APTDIR/lists" ] || die "no arm64 apt state in $APTDIR (run resources/guest/arm64/fetch.sh)"
APT=(-q -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o Dir::State::status=/dev/null
     -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Get::List-Cleanup=0)
[ "$(id -u)" -ne 0 ] || APT+=(-o APT::Sandbox::User=root)
mkdir -p "$DEBS"
pkgs=$(apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances qemu-system-arm 2>/dev/null | grep -v '^ \|<' | sort -u \
       | grep -E '^(qemu-system-arm|lib|zlib)' || true)
[ -n "$pkgs" ] || die "apt knows no qemu-system-arm for arm64"
missing=()
for p in $pkgs; do ls "$DEBS/${p}_"*_arm64.deb >/dev/null 2>&1 || ls "$DEBS/${p}_"*_all.deb >/dev/null 2>&1 || missing+=("$p:arm64"); done
if [ ${#missing[@]} -gt 0 ]; then
  (cd "$DEBS" && apt-get "${APT[@]}" download "${missing[@]}" >&2) || die "apt-get download failed"
fi
rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp/root"
for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$OUT.tmp/root"; done
[ -x "$OUT.tmp/root/usr/bin/qemu-system-aarch64" ] || die "no qemu-system-aarch64 in the unpacked packages"
# keep only what running it needs (the L1 is unpacked by TCG: every MiB
# counts): the binary, the loader and the closure of its NEEDED libraries,
# in one flat lib/
R=$OUT.tmp/root
mkdir -p "$OUT.tmp/l1/lib" "$OUT.tmp/l1/bin"
cp "$R/usr/bin/qemu-system-aarch64" "$OUT.tmp/l1/bin/"
cp -L "$R/lib/ld-linux-aarch64.so.1" "$OUT.tmp/l1/lib/"
"$ROOT/resources/tools/copy-needed-libs.sh" aarch64-linux-gnu-readelf "$R" aarch64-linux-gnu \
  "$R/usr/bin/qemu-system-aarch64" "$OUT.tmp/l1/lib" || die "the libraries of qemu-system-aarch64 are incomplete"
rm -rf "$R" "$OUT"; mv "$OUT.tmp" "$OUT"; touch "$OUT/complete"
echo "fetch-qemu.sh: $(du -sh "$OUT/l1" | cut -f1) in $OUT/l1 (qemu-system-aarch64 and $(ls "$OUT/l1/lib" | wc -l) libraries)" >&2
