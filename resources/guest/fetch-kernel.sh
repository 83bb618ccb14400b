#!/bin/bash
# fetch-kernel.sh - fetch the Debian 6.12 cloud kernel that dmavm's guests (L2)
# and the nested test sandbox (L1) boot, and unpack it into build/guest/:
#   vmlinuz   the bzImage
#   vmlinux   the uncompressed ELF inside it (has the PVH entry note)
#   modules/  the package's lib/modules/<KVER> tree (.ko.xz files)
#   kver      the kernel version string, written last (marks a complete fetch)
# The package is only downloaded (apt-get download) and unpacked (dpkg-deb -x),
# never installed. Picks the newest linux-image-6.12.*-cloud-amd64 apt offers
# (the -unsigned one if present); DMAVM_GUEST_KVER=6.12.N+debM-cloud-amd64 pins
# a version. Does nothing when build/guest already holds that version.
#
# --debian12-generic: Debian 12's own default kernel instead, the newest
# linux-image-6.1.0-N-amd64 (generic flavour: no virtio-iommu driver, Intel
# VT-d built in, the virtio core and transports as uncompressed modules),
# into build/guest-debian12/ (vmlinuz, modules/, kver; no vmlinux), for
# `dmavm boot-test --kernel ... --modules ...`; DMAVM_GUEST_KVER=6.1.0-N-amd64
# pins a version.
# usage: resources/guest/fetch-kernel.sh [--debian12-generic]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/build/guest
CACHE=$ROOT/build/cache
# the package names to pick from (grep -E) and how messages call them
NAMES='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64(-unsigned)?$'
WHAT=6.12.*-cloud-amd64 PREFIX=linux-image-6.12
PVH=1
case ${1:-} in
  '') ;;
  --debian12-generic)
    OUT=$ROOT/build/guest-debian12
    NAMES='^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$'
    WHAT=6.1.0-*-amd64 PREFIX=linux-image-6.1.0- PVH= ;;
  *) echo "fetch-kernel.sh: unknown argument $1 (usage: [--debian12-generic])" >&2; exit 1 ;;
esac
die() { echo "fetch-kernel.sh: error: $*" >&2; exit 1; }
for t in apt-cache apt-get dpkg-deb zstd od flock; do
  command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"
done
# One fetch at a time per checkout: test binaries prepare their guests in
# parallel, and a second fetch would read the package the first is still
# downloading into the cache. The later one waits, then finds it done.
mkdir -p "$CACHE"
exec 9> "$CACHE/.fetch-kernel.lock"
flock 9

have=$(cat "$OUT/kver" 2>/dev/null || true)
outputs_ok() { # $1 = kver
  [ "$have" = "$1" ] && [ -s "$OUT/vmlinuz" ] && { [ -z "$PVH" ] || [ -s "$OUT/vmlinux" ]; } \
    && [ -d "$OUT/modules/kernel" ]
}

# Newest candidate: "KVER PKG" for the highest package of $NAMES with a version
# apt can download, -unsigned preferred over the signed one of the same KVER.
candidates() {
  local names
  names=$(apt-cache pkgnames "$PREFIX" 2>/dev/null | grep -E "$NAMES" || true)
  [ -n "$names" ] || return 0
  # shellcheck disable=SC2086  # one word per package name
  apt-cache policy $names 2>/dev/null | awk '
    /^[^ ].*:$/      { p = substr($0, 1, length($0) - 1) }
    /^ *Candidate:/  { if ($2 != "(none)") {
                         k = p; sub(/^linux-image-/, "", k); u = sub(/-unsigned$/, "", k)
                         print k, (u ? 0 : 1), p } }' \
    | sort -k1,1V -k2,2n
}
pick() { # $1 = pinned kver or empty
  if [ -n "$1" ]; then candidates | awk -v k="$1" '$1 == k' | head -1
  else c=$(candidates); newest=$(tail -1 <<<"$c" | cut -d' ' -f1)
       [ -n "$newest" ] && awk -v k="$newest" '$1 == k' <<<"$c" | head -1; fi
}

apt_update() { # fresh machine: apt's package lists may be missing or stale
  local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "fetch-kernel.sh: $1, running apt-get update" >&2
  "${sudo[@]}" apt-get update -q >&2 || true
}
want=${DMAVM_GUEST_KVER:-}
sel=$(pick "$want" || true)
if [ -z "$sel" ]; then
  apt_update "no linux-image-$WHAT in apt's lists"
  sel=$(pick "$want" || true)
fi
if [ -z "$sel" ]; then
  # offline or package gone: a complete earlier fetch still serves
  if [ -n "$have" ] && outputs_ok "$have" && { [ -z "$want" ] || [ "$want" = "$have" ]; }; then
    echo "fetch-kernel.sh: warning: apt offers no linux-image-${want:-$WHAT}; keeping $have" >&2
    exit 0
  fi
  die "apt offers no linux-image-${want:-$WHAT} package"
fi
read -r KVER _ PKG <<<"$sel"
outputs_ok "$KVER" && exit 0

echo "fetch-kernel.sh: fetching $PKG" >&2
mkdir -p "$CACHE" "$ROOT/build"
deb=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | head -1)
# as root, apt would download as user _apt, who may not reach the cache dir
aptdl=(apt-get download -q); [ "$(id -u)" -ne 0 ] || aptdl+=(-o APT::Sandbox::User=root)
if [ -z "$deb" ]; then
  if ! (cd "$CACHE" && "${aptdl[@]}" "$PKG" >&2); then
    apt_update "apt-get download $PKG failed"   # lists older than the archive
    (cd "$CACHE" && "${aptdl[@]}" "$PKG" >&2) || die "apt-get download $PKG failed"
  fi
  deb=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | head -1)
  [ -n "$deb" ] || die "apt-get download $PKG left no .deb in $CACHE"
fi

# Unpack into a scratch dir and move into place at the end: an interrupted run
# never leaves outputs that look complete.
tmp=$ROOT/build/guest.tmp.$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"; mkdir -p "$tmp/pkg"
dpkg-deb -x "$deb" "$tmp/pkg" || die "dpkg-deb -x $deb failed"
img=$tmp/pkg/boot/vmlinuz-$KVER
mods=$tmp/pkg/lib/modules/$KVER
[ -f "$img" ] || die "$deb has no boot/vmlinuz-$KVER"
[ -d "$mods/kernel" ] || die "$deb has no lib/modules/$KVER/kernel"

# vmlinux: the zstd payload of the bzImage. The setup header gives the payload's
# offset (0x248) and length (0x24c), counted from the protected-mode code at
# (setup_sects+1)*512; the payload is one zstd frame (magic 28 b5 2f fd) followed
# by the 4-byte little-endian size of the uncompressed data. The 6.12 cloud
# kernel's only: the tests boot it by PVH; --debian12-generic is booted as a
# bzImage, as a user boots it.
extract_vmlinux() {
  u8()  { od -An -t u1 -j "$2" -N 1 "$1" | tr -d ' '; }
  u32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
  setup_sects=$(u8 "$img" 497); [ "$setup_sects" -ne 0 ] || setup_sects=4
  pm=$(( (setup_sects + 1) * 512 ))
  off=$(( pm + $(u32 "$img" $((0x248))) ))
  len=$(u32 "$img" $((0x24c)))
  magic=$(od -An -t x1 -j "$off" -N 4 "$img" | tr -d ' ')
  if [ "$magic" != 28b52ffd ]; then
    # unexpected header: fall back to the first zstd magic in the file
    off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$img" | head -1 | cut -d: -f1 || true)
    [ -n "$off" ] || die "no zstd payload (magic 28 b5 2f fd) in $img"
    len=$(( $(stat -c %s "$img") - off ))
  fi
  dd if="$img" of="$tmp/payload.zst" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none
  size=$(u32 "$tmp/payload.zst" $((len - 4)))
  head -c $((len - 4)) "$tmp/payload.zst" | zstd -dq -c > "$tmp/vmlinux" 2>/dev/null \
    || zstd -dq -c "$tmp/payload.zst" > "$tmp/vmlinux" 2>/dev/null || true
  [ "$(head -c 4 "$tmp/vmlinux" | od -An -t x1 | tr -d ' ')" = 7f454c46 ] \
    || die "decompressed bzImage payload of $img is not an ELF file"
  got=$(stat -c %s "$tmp/vmlinux")
  [ "$got" -eq "$size" ] || echo "fetch-kernel.sh: warning: vmlinux is $got bytes, bzImage says $size" >&2
}
[ "$(od -An -c -j 514 -N 4 "$img" | tr -d ' ')" = HdrS ] || die "$img is not a bzImage (no HdrS)"
[ -z "$PVH" ] || extract_vmlinux

mkdir -p "$OUT"
rm -f "$OUT/kver"
rm -rf "$OUT/modules"
mv "$mods" "$OUT/modules"
if [ -n "$PVH" ]; then mv "$tmp/vmlinux" "$OUT/vmlinux"; else rm -f "$OUT/vmlinux"; fi
cp "$img" "$OUT/vmlinuz"
echo "$KVER" > "$OUT/kver"
echo "fetch-kernel.sh: $KVER ready in $OUT" >&2
