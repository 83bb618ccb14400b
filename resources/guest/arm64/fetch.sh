#!/bin/bash
# fetch.sh - fetch what the arm64 sandbox of the test bed boots, and unpack it
# into build/guest-arm64/:
#   Image     the Debian 6.12 cloud arm64 kernel, uncompressed (the package's
#             vmlinuz is a gzip-compressed Image); boots the L1 and the L2s
#   config    the kernel's config-KVER (CONFIG_KVM etc.)
#   modules/  the package's lib/modules/<KVER> tree (.ko.xz files)
#   busybox   busybox from busybox-static:arm64 (a static aarch64 binary)
#   kver      the kernel version string, written last (marks a complete fetch)
# The arm64 packages are only downloaded and unpacked (dpkg-deb -x), never
# installed. apt reaches them through a private state in build/apt-arm64/
# (its own package lists, architecture arm64, the host's sources): the host's
# dpkg architectures and apt lists are left alone, so this never races other
# apt users of the machine (no `dpkg --add-architecture`).
# Picks the newest linux-image-6.12.*-cloud-arm64 (the -unsigned one if
# present); DMAVM_GUEST_ARM64_KVER=6.12.N+debM-cloud-arm64 pins a version.
# Does nothing (no apt at all) when build/guest-arm64 is complete and no other
# version is pinned; DMAVM_GUEST_ARM64_REFRESH=1 looks for a newer kernel.
# usage: resources/guest/arm64/fetch.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=$ROOT/build/guest-arm64
CACHE=$ROOT/build/cache
APTDIR=$ROOT/build/apt-arm64
die() { echo "fetch.sh (arm64): error: $*" >&2; exit 1; }
for t in apt-cache apt-get dpkg-deb gzip file; do
  command -v $t >/dev/null || die "$t not found (run resources/setup.sh)"
done

want=${DMAVM_GUEST_ARM64_KVER:-}
have=$(cat "$OUT/kver" 2>/dev/null || true)
outputs_ok() { # $1 = kver
  [ "$have" = "$1" ] && [ -s "$OUT/Image" ] && [ -s "$OUT/config" ] && [ -d "$OUT/modules/kernel" ] \
    && [ -x "$OUT/busybox" ]
}
if [ -n "$have" ] && [ "${DMAVM_GUEST_ARM64_REFRESH:-0}" != 1 ] && outputs_ok "${want:-$have}"; then
  exit 0
fi

# apt with a private state: arm64 package lists under build/apt-arm64, the
# host's sources, no installed-package status (nothing is installed)
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$CACHE"
APT=(-q -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o Dir::State::status=/dev/null
     -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Get::List-Cleanup=0
     -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
     -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false)
# as root, apt would download as user _apt, who may not reach build/
[ "$(id -u)" -ne 0 ] || APT+=(-o APT::Sandbox::User=root)
apt_update() {
  echo "fetch.sh (arm64): $1, updating the arm64 package lists in $APTDIR" >&2
  apt-get "${APT[@]}" update >&2 || echo "fetch.sh (arm64): warning: apt-get update (arm64) failed" >&2
}

# Newest candidate: "KVER PKG" for the highest linux-image-6.12.*-cloud-arm64 with a
# version apt can download, -unsigned preferred over the signed one of the same KVER.
candidates() {
  local names
  names=$(apt-cache "${APT[@]}" pkgnames linux-image-6.12 2>/dev/null \
    | grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-arm64(-unsigned)?$' || true)
  [ -n "$names" ] || return 0
  # shellcheck disable=SC2086  # one word per package name
  apt-cache "${APT[@]}" policy $names 2>/dev/null | awk '
    /^[^ ].*:$/      { p = substr($0, 1, length($0) - 1); sub(/:arm64$/, "", p) }
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

sel=$(pick "$want" || true)
if [ -z "$sel" ]; then
  apt_update "no arm64 6.12 cloud kernel in the arm64 lists"
  sel=$(pick "$want" || true)
fi
if [ -z "$sel" ]; then
  if [ -n "$have" ] && outputs_ok "$have" && { [ -z "$want" ] || [ "$want" = "$have" ]; }; then
    echo "fetch.sh (arm64): warning: apt offers no linux-image-${want:-6.12.*-cloud-arm64}; keeping $have" >&2
    exit 0
  fi
  die "apt offers no linux-image-${want:-6.12.*-cloud-arm64} package for arm64"
fi
read -r KVER _ PKG <<<"$sel"
outputs_ok "$KVER" && exit 0

# download PKG:arm64 into the cache (once), echo the .deb's path
download() { # $1 = package name
  local deb
  deb=$(find "$CACHE" -maxdepth 1 -name "${1}_*_arm64.deb" | sort -V | tail -1)
  if [ -z "$deb" ]; then
    echo "fetch.sh (arm64): downloading $1:arm64" >&2
    if ! (cd "$CACHE" && apt-get "${APT[@]}" download "$1:arm64" >&2); then
      apt_update "apt-get download $1:arm64 failed"   # lists older than the archive
      (cd "$CACHE" && apt-get "${APT[@]}" download "$1:arm64" >&2) || die "apt-get download $1:arm64 failed"
    fi
    deb=$(find "$CACHE" -maxdepth 1 -name "${1}_*_arm64.deb" | sort -V | tail -1)
    [ -n "$deb" ] || die "apt-get download $1:arm64 left no .deb in $CACHE"
  fi
  echo "$deb"
}
kdeb=$(download "$PKG")
bdeb=$(download busybox-static)

# Unpack into a scratch dir and move into place at the end: an interrupted run
# never leaves outputs that look complete.
tmp=$ROOT/build/guest-arm64.tmp.$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"; mkdir -p "$tmp/pkg" "$tmp/bb"
dpkg-deb -x "$kdeb" "$tmp/pkg" || die "dpkg-deb -x $kdeb failed"
dpkg-deb -x "$bdeb" "$tmp/bb" || die "dpkg-deb -x $bdeb failed"
img=$tmp/pkg/boot/vmlinuz-$KVER
cfg=$tmp/pkg/boot/config-$KVER
mods=$tmp/pkg/lib/modules/$KVER
[ -f "$img" ] || die "$kdeb has no boot/vmlinuz-$KVER"
[ -f "$cfg" ] || die "$kdeb has no boot/config-$KVER"
[ -d "$mods/kernel" ] || die "$kdeb has no lib/modules/$KVER/kernel"
[ -x "$tmp/bb/bin/busybox" ] || die "$bdeb has no bin/busybox"

# Image: the arm64 boot image has "ARM\x64" at offset 56; Debian ships it gzipped
if [ "$(head -c 2 "$img" | od -An -t x1 | tr -d ' ')" = 1f8b ]; then
  gzip -dc "$img" > "$tmp/Image" || die "gunzip $img failed"
else
  cp "$img" "$tmp/Image"
fi
[ "$(od -An -c -j 56 -N 4 "$tmp/Image" | tr -d ' ')" = 'ARMd' ] \
  || die "$img is not an arm64 Image (no ARM\\x64 magic at offset 56; an EFI zboot image?)"
file -b "$tmp/bb/bin/busybox" | grep -q 'ARM aarch64.*statically linked' \
  || die "$bdeb's busybox is not a static aarch64 binary: $(file -b "$tmp/bb/bin/busybox")"

kvm=$(grep -E '^CONFIG_KVM=' "$cfg" || echo 'CONFIG_KVM is not set')
case $kvm in
  CONFIG_KVM=y) ;;
  CONFIG_KVM=m) echo "fetch.sh (arm64): note: $KVER has KVM as a module" >&2 ;;
  *) echo "fetch.sh (arm64): warning: $KVER has no KVM ($kvm): the arm64 sandbox cannot run guests" >&2 ;;
esac

mkdir -p "$OUT"
rm -f "$OUT/kver"
rm -rf "$OUT/modules"
mv "$mods" "$OUT/modules"
mv "$tmp/Image" "$OUT/Image"
cp "$cfg" "$OUT/config"
install -m 755 "$tmp/bb/bin/busybox" "$OUT/busybox"
echo "$KVER" > "$OUT/kver"
echo "fetch.sh (arm64): $KVER ready in $OUT ($kvm)" >&2
