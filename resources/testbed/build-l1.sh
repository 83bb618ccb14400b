#!/bin/bash
# build-l1.sh - build the initramfs of the nested test sandbox (L1), booted by
# QEMU TCG with the guest kernel (build/guest/vmlinuz) on machines without
# hardware KVM. It holds busybox-static with applet links, the KVM modules
# (irqbypass, kvm, kvm-amd, decompressed: busybox insmod cannot read .ko.xz),
# tun (for the TAPs of the net scenarios, which load it),
# the static dmavm binary, the payloads, the L2 guest (kernel, PVH vmlinux,
# initramfs) under /guest, the scenarios (tests/scenarios/*.sh) and /init
# (resources/testbed/l1-init).
# With DMAVM_L1_WITH_QEMU=1 it also carries the project's QEMU (Debian 13's,
# build/qemu-x86/dist of resources/testbed/fetch-qemu.sh: the binary, its
# loader, libraries and firmware) under /qemu, run by the wrapper
# /usr/bin/qemu-system-x86_64, for benchmarks that compare dmavm with QEMU
# inside the same L1 (tests/scenarios/bench-*.sh).
# Output: build/testbed/l1.cpio (uncompressed: TCG unpacks that fastest);
# rebuilt only when an input changed.
# usage: resources/testbed/build-l1.sh DMAVM_STATIC_BINARY PAYLOAD_DIR
#
# For other images of the same L1 (`dmavm boot-test` in sandbox mode):
#   DMAVM_L1_OUT=FILE   write FILE instead (always rebuilt, no stamp); a
#                       dynamically linked dmavm is then carried with its
#                       libraries and loader
#   DMAVM_L1_LEAN=1     leave out the L2 guest, payloads and scenarios
#   DMAVM_L1_EXTRA=DIR  copy DIR's contents to the image's root
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GUEST=$ROOT/build/guest
OUT=$ROOT/build/testbed
BUSYBOX=/bin/busybox
die() { echo "build-l1.sh: error: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: build-l1.sh DMAVM_STATIC_BINARY PAYLOAD_DIR"
DMAVM=$1 PAYLOADS=$2
CUSTOM_OUT=${DMAVM_L1_OUT:-} LEAN=${DMAVM_L1_LEAN:-0} EXTRA=${DMAVM_L1_EXTRA:-}
[ -f "$DMAVM" ] || die "dmavm binary $DMAVM not found"
[ -d "$PAYLOADS" ] || die "payload directory $PAYLOADS not found"
[ -z "$EXTRA" ] || [ -d "$EXTRA" ] || die "DMAVM_L1_EXTRA=$EXTRA is not a folder"
[ -x $BUSYBOX ] || die "$BUSYBOX not found (run resources/setup.sh: busybox-static)"
for t in cpio xz readelf sha256sum; do command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"; done
DYNAMIC=0
readelf -l "$DMAVM" 2>/dev/null | grep -q 'Requesting program interpreter' && DYNAMIC=1
[ $DYNAMIC = 0 ] || [ -n "$CUSTOM_OUT" ] \
  || die "$DMAVM is dynamically linked; build it with RUSTFLAGS='-C target-feature=+crt-static'"
[ -s "$GUEST/kver" ] || die "no guest kernel in $GUEST (run resources/guest/fetch-kernel.sh)"
[ "$LEAN" = 1 ] || [ -s "$GUEST/initramfs.cpio.gz" ] \
  || die "no $GUEST/initramfs.cpio.gz (run resources/guest/build-initramfs.sh)"
KVER=$(cat "$GUEST/kver")
MODDIR=$GUEST/modules/kernel

inputs=("$HERE/build-l1.sh" "$HERE/l1-init" "$BUSYBOX" "$DMAVM" "$GUEST/kver" "$GUEST/vmlinuz"
        "$GUEST/vmlinux" "$GUEST/initramfs.cpio.gz")
shopt -s nullglob
scenarios=("$ROOT"/tests/scenarios/*.sh)
WITH_QEMU=${DMAVM_L1_WITH_QEMU:-0}
QEMU_DIST=$ROOT/build/qemu-x86/dist
if [ "$WITH_QEMU" = 1 ]; then
  [ -x "$QEMU_DIST/bin/qemu-system-x86_64" ] || die "$QEMU_DIST not found (run resources/setup.sh)"
  inputs+=("$QEMU_DIST/bin/qemu-system-x86_64" "$QEMU_DIST/share"/*)
fi
if [ -z "$CUSTOM_OUT" ]; then
  stamp=$( { echo "with_qemu=$WITH_QEMU"; sha256sum "${inputs[@]}" "${scenarios[@]}";
             (cd "$PAYLOADS" && find . -type f | LC_ALL=C sort | xargs -r sha256sum); } \
           | sed "s|$ROOT|.|" | sha256sum | cut -d' ' -f1)
  if [ -s "$OUT/l1.cpio" ] && [ "$(cat "$OUT/l1.stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
  fi
fi
TARGET=${CUSTOM_OUT:-$OUT/l1.cpio}
[ -z "$CUSTOM_OUT" ] || OUT=$(dirname "$CUSTOM_OUT")

mkdir -p "$OUT"
R=$(mktemp -d "$OUT/l1.root.XXXXXX")
trap 'rm -rf "$R" "$TARGET.$$"' EXIT
# carry_libraries BINARY: every library ldd names, and the dynamic loader
carry_libraries() {
  for lib in $(ldd "$1" | awk '/=>/ { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
}
chmod 755 "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp,run,lib/modules,guest,payloads,scenarios}
cp $BUSYBOX "$R/bin/busybox"
for a in $($BUSYBOX --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
# tun: loaded by the net scenarios and by `dmavm boot-test` in sandbox mode
# (a matrix with network devices) only, for the TAPs of their guests
for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd drivers/net/tun; do
  [ -f "$MODDIR/$m.ko.xz" ] || die "$MODDIR/$m.ko.xz missing ($KVER)"
  xz -dc "$MODDIR/$m.ko.xz" > "$R/lib/modules/$(basename $m).ko"
done
install -m 755 "$DMAVM" "$R/bin/dmavm"
[ $DYNAMIC = 0 ] || carry_libraries "$DMAVM"
if [ "$LEAN" != 1 ]; then
  cp -a "$PAYLOADS"/. "$R/payloads/"
  cp "$GUEST/vmlinuz" "$GUEST/vmlinux" "$GUEST/initramfs.cpio.gz" "$R/guest/"
  [ ${#scenarios[@]} -eq 0 ] || install -m 755 "${scenarios[@]}" "$R/scenarios/"
fi
[ -z "$EXTRA" ] || cp -a "$EXTRA"/. "$R/"
install -m 755 "$HERE/l1-init" "$R/init"
if [ "$WITH_QEMU" = 1 ]; then
  mkdir -p "$R/usr/bin"
  cp -a "$QEMU_DIST" "$R/qemu"
  cat > "$R/usr/bin/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
exec /qemu/lib/ld-linux-x86-64.so.2 --library-path /qemu/lib /qemu/bin/qemu-system-x86_64 -L /qemu/share "$@"
WRAP
  chmod 755 "$R/usr/bin/qemu-system-x86_64"
fi
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet) > "$TARGET.$$"
mv "$TARGET.$$" "$TARGET"
[ -n "$CUSTOM_OUT" ] || echo "$stamp" > "$OUT/l1.stamp"
