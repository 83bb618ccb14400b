#!/bin/bash
# build-initramfs.sh - build the initramfs of dmavm's arm64 test guests (L2),
# the aarch64 twin of resources/guest/build-initramfs.sh: busybox (aarch64,
# from busybox-static:arm64) with applet links, the same /init
# (resources/guest/init, which prints `DMAVM key=value` lines) and checks
# (resources/guest/checks/*.sh -> /checks), and the virtio drivers the Debian
# arm64 cloud kernel builds as modules (decompressed: busybox insmod cannot
# read .ko.xz), loaded by /init in /lib/modules/load-order. Drivers built in
# (=y in the kernel's config) are skipped. /lib/modules/kver names the kernel
# they belong to: /init loads none into another one (the pool kernel of
# build-pool-kernel.sh, which has them built in).
# There is no dmavm-exit helper: the x86 one writes I/O port 0xf4, which arm64
# lacks, so /init ends the VM with `poweroff -f` (PSCI SYSTEM_OFF) and the
# check's status is in its `DMAVM check=NAME status=N` line.
# Output: build/guest-arm64/initramfs.cpio.gz; rebuilt only when an input changed.
# Needs build/guest-arm64 from resources/guest/arm64/fetch.sh.
# usage: resources/guest/arm64/build-initramfs.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUESTSRC=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$ROOT/build/guest-arm64
BUSYBOX=$OUT/busybox
# drivers that may be modules, in load order (dependencies first; the IOMMU
# before the devices it translates for)
MODULES=(failover net_failover virtio-iommu virtio_mmio virtio_blk virtio_net virtio-rng)
die() { echo "build-initramfs.sh (arm64): error: $*" >&2; exit 1; }

for t in cpio gzip xz sha256sum; do command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"; done
[ -s "$OUT/kver" ] && [ -x "$BUSYBOX" ] || die "no arm64 guest kernel in $OUT (run resources/guest/arm64/fetch.sh first)"
MODDIR=$OUT/modules/kernel

stamp=$( { sha256sum "$HERE/build-initramfs.sh" "$GUESTSRC/init" "$BUSYBOX" "$OUT/kver" \
             "$GUESTSRC"/checks/*.sh; printf '%s\n' "${MODULES[@]}"; } | sed "s|$ROOT|.|" | sha256sum | cut -d' ' -f1)
if [ -s "$OUT/initramfs.cpio.gz" ] && [ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

R=$(mktemp -d "$OUT/initramfs.root.XXXXXX")
trap 'rm -rf "$R" "$OUT/initramfs.cpio.gz.$$"' EXIT
chmod 755 "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,checks,lib/modules}
cp "$BUSYBOX" "$R/bin/busybox"
# applet links: the aarch64 busybox cannot run here, so the list comes from
# the host's busybox-static, which must be the same build (same applets)
[ -x /bin/busybox ] || die "/bin/busybox not found (run resources/setup.sh: busybox-static), needed for the applet list"
ver() { grep -aoE 'BusyBox v[0-9][^ ]* \([^)]*\)' "$1" | head -1; }
[ "$(ver "$BUSYBOX")" = "$(ver /bin/busybox)" ] \
  || echo "build-initramfs.sh (arm64): warning: $(ver "$BUSYBOX") (arm64) and $(ver /bin/busybox) (host) differ; applet links follow the host's" >&2
applets=$(/bin/busybox --list)
for a in $applets; do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
install -m 755 "$GUESTSRC/init" "$R/init"
install -m 755 "$GUESTSRC"/checks/*.sh "$R/checks/"
: > "$R/lib/modules/load-order"
cp "$OUT/kver" "$R/lib/modules/kver"
for m in "${MODULES[@]}"; do
  f=$(find "$MODDIR" -name "$m.ko.xz" | head -1)
  if [ -z "$f" ]; then
    # built in? module names use '_' in modules.builtin
    grep -q "/${m//-/[-_]}\.ko\$" "$OUT/modules/modules.builtin" 2>/dev/null && continue
    die "module $m.ko.xz not in $MODDIR and not built in"
  fi
  xz -dc "$f" > "$R/lib/modules/$m.ko"
  echo "$m" >> "$R/lib/modules/load-order"
done
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -9n) \
  > "$OUT/initramfs.cpio.gz.$$"
mv "$OUT/initramfs.cpio.gz.$$" "$OUT/initramfs.cpio.gz"
echo "$stamp" > "$OUT/initramfs.stamp"
