#!/bin/bash
# build-l1.sh - build the initramfs of the arm64 test sandbox (L1), booted by
# qemu-system-aarch64 TCG (-M virt,virtualization=on,gic-version=3 -cpu max)
# with the arm64 guest kernel (build/guest-arm64/Image), whose KVM is built in
# (no modules to load). The arm64 twin of resources/testbed/build-l1.sh. It holds
#   /bin/busybox      busybox-static:arm64 with applet links
#   /bin/kvm-probe    the KVM proof (resources/testbed-arm64/kvm-probe.c,
#                     cross-compiled static with aarch64-linux-gnu-gcc)
#   /bin/dmavm        the static aarch64 dmavm, when one is given and exists
#   /qemu             Debian's arm64 qemu-system-aarch64 with its libraries
#                     (bin/, lib/), when resources/testbed-arm64/fetch-qemu.sh
#                     has put them in build/qemu-arm64/l1 (the benchmark)
#   /guest            the L2 guest: Image and initramfs.cpio.gz
#   /lib/modules      tun.ko (not loaded at boot: the net scenarios load it)
#   /guest/pool       with --pool-kernel: Image and kver of the guest kernel
#                     that bounces through restricted DMA pools
#                     (build/guest-arm64-pool, resources/guest/arm64/build-pool-kernel.sh)
#   /payloads         empty: there are no aarch64 payloads
#   /scenarios        resources/testbed-arm64/scenarios/*.sh and
#                     tests/scenarios/arm64-*.sh and disks-lib.sh
#   /init             resources/testbed-arm64/l1-init
# Output: build/testbed-arm64/l1.cpio, or l1-pool.cpio with --pool-kernel (two
# files, so that a build of one never replaces the other under a test that is
# about to boot it); uncompressed: TCG unpacks that fastest; rebuilt only when
# an input changed.
# usage: resources/testbed-arm64/build-l1.sh [--pool-kernel] [DMAVM_AARCH64_BINARY]
#   Without the argument, or when the file does not exist (build it with
#   resources/testbed-arm64/build-dmavm.sh), the L1
#   carries no dmavm and says so; scenarios that need it then fail.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GUEST=$ROOT/build/guest-arm64
OUT=$ROOT/build/testbed-arm64
CC=aarch64-linux-gnu-gcc
die() { echo "build-l1.sh (arm64): error: $*" >&2; exit 1; }

POOL=
if [ "${1:-}" = --pool-kernel ]; then POOL=$ROOT/build/guest-arm64-pool; shift; fi
[ $# -le 1 ] || die "usage: build-l1.sh [--pool-kernel] [DMAVM_AARCH64_BINARY]"
DMAVM=${1:-}
for t in cpio sha256sum file $CC; do command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"; done
[ -x /bin/busybox ] || die "/bin/busybox not found (run resources/setup.sh: busybox-static), needed for the applet list"
[ -s "$GUEST/kver" ] && [ -s "$GUEST/Image" ] && [ -x "$GUEST/busybox" ] \
  || die "no arm64 guest kernel in $GUEST (run resources/guest/arm64/fetch.sh)"
[ -s "$GUEST/initramfs.cpio.gz" ] || die "no $GUEST/initramfs.cpio.gz (run resources/guest/arm64/build-initramfs.sh)"
[ -z "$POOL" ] || { [ -s "$POOL/key" ] && [ -s "$POOL/Image" ] && [ -s "$POOL/kver" ]; } \
  || die "no pool kernel in $POOL (run resources/guest/arm64/build-pool-kernel.sh)"
# arm64 KVM cannot be a module (Kconfig bool): it is built in or absent
grep -qx 'CONFIG_KVM=y' "$GUEST/config" || die "$(cat "$GUEST/kver") has no built-in KVM ($GUEST/config)"

if [ -n "$DMAVM" ] && [ -f "$DMAVM" ]; then
  file -b "$DMAVM" | grep -q 'ARM aarch64' || die "$DMAVM is not an aarch64 binary: $(file -b "$DMAVM")"
  file -b "$DMAVM" | grep -qE 'statically linked|static-pie linked' \
    || die "$DMAVM is dynamically linked; build it with RUSTFLAGS='-C target-feature=+crt-static' (resources/testbed-arm64/build-dmavm.sh)"
else
  echo "build-l1.sh (arm64): note: no aarch64 dmavm${DMAVM:+ at $DMAVM}; the arm64 L1 carries none" \
       "(build it with resources/testbed-arm64/build-dmavm.sh)" >&2
  DMAVM=
fi

mkdir -p "$OUT"
# the KVM proof, rebuilt when its source changes
probe=$OUT/kvm-probe
if [ ! -x "$probe" ] || [ "$HERE/kvm-probe.c" -nt "$probe" ]; then
  $CC -O2 -Wall -Wextra -static -s -o "$probe.$$" "$HERE/kvm-probe.c" || die "compiling kvm-probe.c failed"
  mv "$probe.$$" "$probe"
fi

shopt -s nullglob
scenarios=("$HERE"/scenarios/*.sh "$ROOT"/tests/scenarios/arm64-*.sh "$ROOT"/tests/scenarios/disks-lib.sh
           "$ROOT"/tests/scenarios/net-lib.sh)
# tun: loaded by the net scenarios only (net-lib.sh), for their guests' TAPs
TUN=$GUEST/modules/kernel/drivers/net/tun.ko.xz
[ -s "$TUN" ] || grep -q '/tun\.ko$' "$GUEST/modules/modules.builtin" 2>/dev/null \
  || die "no tun module in $GUEST/modules (run resources/guest/arm64/fetch.sh)"
inputs=("$HERE/build-l1.sh" "$HERE/l1-init" "$GUEST/busybox" "$probe" "$GUEST/kver" "$GUEST/Image"
        "$GUEST/initramfs.cpio.gz" /bin/busybox)
[ -z "$DMAVM" ] || inputs+=("$DMAVM")
[ -z "$POOL" ] || inputs+=("$POOL/Image" "$POOL/kver")
QEMU=$ROOT/build/qemu-arm64/l1
[ -f "$ROOT/build/qemu-arm64/complete" ] || QEMU=
[ -z "$QEMU" ] || inputs+=("$QEMU"/bin/* "$QEMU"/lib/*)
stamp=$( { echo "dmavm=${DMAVM:+yes} qemu=${QEMU:+yes} pool=${POOL:+yes}"; sha256sum "${inputs[@]}" "${scenarios[@]}"; } \
         | sed "s|$ROOT|.|" | sha256sum | cut -d' ' -f1)
IMAGE=l1${POOL:+-pool}
if [ -s "$OUT/$IMAGE.cpio" ] && [ "$(cat "$OUT/$IMAGE.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

R=$(mktemp -d "$OUT/l1.root.XXXXXX")
trap 'rm -rf "$R" "$OUT/$IMAGE.cpio.$$"' EXIT
chmod 755 "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,run,guest,payloads,scenarios}
cp "$GUEST/busybox" "$R/bin/busybox"
# the aarch64 busybox cannot run here: the host's busybox-static (same
# Debian build, checked by resources/guest/arm64/build-initramfs.sh) lists the applets
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
install -m 755 "$probe" "$R/bin/kvm-probe"
[ -z "$DMAVM" ] || install -m 755 "$DMAVM" "$R/bin/dmavm"
[ -z "$QEMU" ] || cp -r "$QEMU" "$R/qemu"
cp "$GUEST/Image" "$GUEST/initramfs.cpio.gz" "$GUEST/kver" "$R/guest/"
[ -z "$POOL" ] || { mkdir "$R/guest/pool" && cp "$POOL/Image" "$POOL/kver" "$R/guest/pool/"; }
[ ${#scenarios[@]} -eq 0 ] || install -m 755 "${scenarios[@]}" "$R/scenarios/"
# busybox insmod cannot read .ko.xz
if [ -s "$TUN" ]; then mkdir -p "$R/lib/modules" && xz -dc "$TUN" > "$R/lib/modules/tun.ko"; fi
install -m 755 "$HERE/l1-init" "$R/init"
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet) > "$OUT/$IMAGE.cpio.$$"
mv "$OUT/$IMAGE.cpio.$$" "$OUT/$IMAGE.cpio"
echo "$stamp" > "$OUT/$IMAGE.stamp"
