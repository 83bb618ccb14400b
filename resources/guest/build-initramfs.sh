#!/bin/bash
# build-initramfs.sh - build the initramfs of dmavm's test guests (L2):
# busybox-static with applet links, /init (resources/guest/init), the checks
# (resources/guest/checks/*.sh -> /checks), the dmavm-exit helper, and the
# virtio drivers the Debian cloud kernel builds as modules (decompressed:
# busybox insmod cannot read .ko.xz), loaded by /init in /lib/modules/load-order,
# and the VFIO modules and vfio-domains for the checks that use them.
# Output: build/guest/initramfs.cpio.gz; rebuilt only when an input changed.
# Needs build/guest/modules from fetch-kernel.sh.
# usage: resources/guest/build-initramfs.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/guest
BUSYBOX=/bin/busybox
# drivers built as modules, in load order (dependencies first; the IOMMU before
# the devices it translates for)
MODULES=(failover net_failover virtio-iommu virtio_mmio virtio_blk virtio_net virtio-rng)
# modules shipped but loaded only by the checks that need them (vfio.sh)
OPTIONAL_MODULES=(irqbypass vfio vfio_iommu_type1 vfio-pci-core vfio-pci)
die() { echo "build-initramfs.sh: error: $*" >&2; exit 1; }

[ -x $BUSYBOX ] || die "$BUSYBOX not found (run resources/setup.sh: busybox-static)"
for t in cpio gzip xz gcc sha256sum; do command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"; done
[ -s "$OUT/kver" ] || die "no guest kernel in $OUT (run resources/guest/fetch-kernel.sh first)"
MODDIR=$OUT/modules/kernel

stamp=$( { sha256sum "$HERE/build-initramfs.sh" "$HERE/init" "$HERE/dmavm-exit.c" "$HERE/vfio-domains.c" \
             $BUSYBOX "$OUT/kver" "$HERE"/checks/*.sh; printf '%s\n' "${MODULES[@]}" "${OPTIONAL_MODULES[@]}"; } \
           | sha256sum | cut -d' ' -f1)
if [ -s "$OUT/initramfs.cpio.gz" ] && [ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

mkdir -p "$OUT"
R=$(mktemp -d "$OUT/initramfs.root.XXXXXX")
trap 'rm -rf "$R" "$OUT/initramfs.cpio.gz.$$"' EXIT
chmod 755 "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,checks,lib/modules}
cp $BUSYBOX "$R/bin/busybox"
for a in $($BUSYBOX --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
gcc -Os -static -nostdlib -ffreestanding -fno-tree-loop-distribute-patterns -fno-stack-protector \
    -fcf-protection=none -fno-pie -no-pie -s -o "$R/bin/dmavm-exit" "$HERE/dmavm-exit.c" \
  || die "compiling dmavm-exit.c failed"
gcc -Os -static -s -Wall -o "$R/bin/vfio-domains" "$HERE/vfio-domains.c" || die "compiling vfio-domains.c failed"
install -m 755 "$HERE/init" "$R/init"
install -m 755 "$HERE"/checks/*.sh "$R/checks/"
for m in "${MODULES[@]}"; do
  f=$(find "$MODDIR" -name "$m.ko.xz" | head -1)
  [ -n "$f" ] || die "module $m.ko.xz not in $MODDIR"
  xz -dc "$f" > "$R/lib/modules/$m.ko"
  echo "$m" >> "$R/lib/modules/load-order"
done
for m in "${OPTIONAL_MODULES[@]}"; do
  f=$(find "$MODDIR" -name "$m.ko.xz" | head -1)
  [ -n "$f" ] || die "module $m.ko.xz not in $MODDIR"
  xz -dc "$f" > "$R/lib/modules/$m.ko"
done
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -9n) \
  > "$OUT/initramfs.cpio.gz.$$"
mv "$OUT/initramfs.cpio.gz.$$" "$OUT/initramfs.cpio.gz"
echo "$stamp" > "$OUT/initramfs.stamp"
