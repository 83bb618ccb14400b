#!/bin/bash
# build-initramfs.sh - build the initramfs of dmavm's test guests (L2):
# busybox-static with applet links, /init (resources/guest/init), the checks
# (resources/guest/checks/*.sh -> /checks), the dmavm-exit helper, and the
# virtio drivers the Debian cloud kernel builds as modules, and the virtio core
# and virtio-pci where the kernel builds those as modules too (Debian 12's
# generic 6.1) (decompressed: busybox insmod cannot read .ko.xz), loaded by
# /init in /lib/modules/load-order,
# and the VFIO modules, vfio-domains and vfio-blk-fault for the checks that
# use them.
# Output: build/guest/initramfs.cpio.gz; rebuilt only when an input changed.
# Needs build/guest/modules from fetch-kernel.sh.
# usage: resources/guest/build-initramfs.sh
#
# Parameterised (what `dmavm boot-test` runs to wrap a user's kernel, from
# copies of this script, init, checks and helpers that dmavm carries):
#   build-initramfs.sh --out FILE [--modules DIR]
# writes FILE (always rebuilt) with the modules of the lists below that are
# found under DIR (a lib/modules/KVER tree or any folder of .ko, .ko.xz,
# .ko.zst or .ko.gz files; a driver built into the kernel needs none), and
# without modules when no DIR is given.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/guest
TARGET= MODSRC= PARAM=
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || { echo "build-initramfs.sh: --out needs a FILE" >&2; exit 1; }; TARGET=$2; PARAM=1; shift 2 ;;
    --modules) [ $# -ge 2 ] || { echo "build-initramfs.sh: --modules needs a DIR" >&2; exit 1; }; MODSRC=$2; shift 2 ;;
    *) echo "build-initramfs.sh: unknown argument $1 (usage: [--out FILE [--modules DIR]])" >&2; exit 1 ;;
  esac
done
[ -z "$MODSRC" ] || [ -n "$TARGET" ] || { echo "build-initramfs.sh: --modules needs --out" >&2; exit 1; }
BUSYBOX=/bin/busybox
# the virtio core and the virtio-pci transport, in load order: built into the
# 6.12 cloud kernel, modules of Debian 12's generic 6.1 kernel; packed and
# loaded before MODULES when found, else taken as built in
CORE_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console)
# drivers built as modules, in load order (dependencies first; the IOMMU before
# the devices it translates for)
MODULES=(failover net_failover virtio-iommu virtio_mmio virtio_blk virtio_net virtio-rng)
# modules shipped but loaded only by the checks that need them (vfio.sh; the
# ACPI power button and its input events for hotplug.sh)
OPTIONAL_MODULES=(irqbypass vfio vfio_iommu_type1 vfio-pci-core vfio-pci button evdev)
die() { echo "build-initramfs.sh: error: $*" >&2; exit 1; }

[ -x $BUSYBOX ] || die "$BUSYBOX not found (run resources/setup.sh: busybox-static)"
for t in cpio gzip xz gcc sha256sum; do command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"; done
if [ -n "$PARAM" ]; then
  [ -z "$MODSRC" ] || [ -d "$MODSRC" ] || die "module folder $MODSRC not found"
  OUT=$(dirname "$TARGET")
else
  [ -s "$OUT/kver" ] || die "no guest kernel in $OUT (run resources/guest/fetch-kernel.sh first)"
fi
MODDIR=$OUT/modules/kernel
# module NAME -> its file in MODDIR (.ko.xz; parameterised: any compression)
find_module() {
  if [ -n "$PARAM" ]; then
    [ -n "$MODSRC" ] || return 0
    find "$MODSRC" \( -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" \) | head -1
  else
    find "$MODDIR" -name "$1.ko.xz" | head -1
  fi
}
# decompress module file $1 to $2
unpack_module() {
  case $1 in
    *.xz) xz -dc "$1" > "$2" ;;
    *.zst) zstd -qdc "$1" > "$2" ;;
    *.gz) gzip -dc "$1" > "$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

[ -n "$PARAM" ] || stamp=$( { sha256sum "$HERE/build-initramfs.sh" "$HERE/init" "$HERE/dmavm-exit.c" "$HERE/vfio-domains.c" \
             "$HERE/vfio-blk-fault.c" \
             $BUSYBOX "$OUT/kver" "$HERE"/checks/*.sh; printf '%s\n' "${CORE_MODULES[@]}" "${MODULES[@]}" "${OPTIONAL_MODULES[@]}"; } \
           | sha256sum | cut -d' ' -f1)
if [ -z "$PARAM" ] && [ -s "$OUT/initramfs.cpio.gz" ] && [ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
[ -n "$TARGET" ] || TARGET=$OUT/initramfs.cpio.gz

mkdir -p "$OUT"
R=$(mktemp -d "$OUT/initramfs.root.XXXXXX")
trap 'rm -rf "$R" "$TARGET.$$"' EXIT
chmod 755 "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,checks,lib/modules}
cp $BUSYBOX "$R/bin/busybox"
for a in $($BUSYBOX --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
gcc -Os -static -nostdlib -ffreestanding -fno-tree-loop-distribute-patterns -fno-stack-protector \
    -fcf-protection=none -fno-pie -no-pie -s -o "$R/bin/dmavm-exit" "$HERE/dmavm-exit.c" \
  || die "compiling dmavm-exit.c failed"
gcc -Os -static -s -Wall -o "$R/bin/vfio-domains" "$HERE/vfio-domains.c" || die "compiling vfio-domains.c failed"
gcc -Os -static -s -Wall -o "$R/bin/vfio-blk-fault" "$HERE/vfio-blk-fault.c" || die "compiling vfio-blk-fault.c failed"
install -m 755 "$HERE/init" "$R/init"
install -m 755 "$HERE"/checks/*.sh "$R/checks/"
touch "$R/lib/modules/load-order"
for m in "${CORE_MODULES[@]}"; do
  f=$(find_module "$m")
  [ -n "$f" ] || continue
  unpack_module "$f" "$R/lib/modules/$m.ko"
  echo "$m" >> "$R/lib/modules/load-order"
done
for m in "${MODULES[@]}"; do
  f=$(find_module "$m")
  if [ -z "$f" ]; then
    [ -n "$PARAM" ] && continue
    die "module $m.ko.xz not in $MODDIR"
  fi
  unpack_module "$f" "$R/lib/modules/$m.ko"
  echo "$m" >> "$R/lib/modules/load-order"
done
for m in "${OPTIONAL_MODULES[@]}"; do
  f=$(find_module "$m")
  if [ -z "$f" ]; then
    [ -n "$PARAM" ] && continue
    die "module $m.ko.xz not in $MODDIR"
  fi
  unpack_module "$f" "$R/lib/modules/$m.ko"
done
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -9n) > "$TARGET.$$"
mv "$TARGET.$$" "$TARGET"
[ -n "$PARAM" ] || echo "$stamp" > "$OUT/initramfs.stamp"
