#!/bin/bash
# build-pool-kernel.sh - build the arm64 guest kernel that bounces through
# restricted DMA pools. Debian's 6.12 arm64 kernels reserve a
# restricted-dma-pool region but never use it (CONFIG_DMA_RESTRICTED_POOL is
# unset), so the scenarios of guests confined to a pool boot this one
# instead: Debian's own 6.12 source (linux-source-6.12, the package the
# guest kernels are built from), cross-compiled with gcc-aarch64-linux-gnu
# from `make allnoconfig` plus resources/guest/arm64/pool-kernel.config
# (everything built in, no modules; a small, quick build).
# Output, in build/guest-arm64-pool/:
#   Image     the uncompressed arm64 boot image
#   config    its .config
#   kver      its `uname -r`
#   key       the cache key, written last (marks a complete build)
# The key is the source package's version and the fragment's sha256; an
# output with the same key is reused (no apt, no build). Builds are also kept
# outside the clone, in ${XDG_CACHE_HOME:-~/.cache}/dmavm/pool-kernel/KEY/,
# so a fresh clone on the same machine copies instead of rebuilding; without
# that cache it builds: about 6 CPU-minutes of make (x86_64 host, gcc 12),
# 12.5 minutes of wall clock with `make -j2` at nice 19 on two cores shared
# with other builds, plus half a minute to unpack the source.
# Installs the build's Debian packages when missing, like resources/setup.sh.
# DMAVM_POOL_KERNEL_SOURCE=VERSION pins the linux-source-6.12 version
# (default: apt's candidate). The .deb (150 MiB, in build/cache) and the
# unpacked tree are deleted after a build: the cached Image makes them
# redundant.
# usage: resources/guest/arm64/build-pool-kernel.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$ROOT/build/guest-arm64-pool
CACHE=$ROOT/build/cache
FRAGMENT=$HERE/pool-kernel.config
SRCPKG=linux-source-6.12
XCACHE=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/dmavm/pool-kernel
PACKAGES=(gcc-aarch64-linux-gnu make gcc libc6-dev flex bison bc xz-utils)
MAKE=(make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- KBUILD_BUILD_USER=dmavm KBUILD_BUILD_HOST=dmavm)
die() { echo "build-pool-kernel.sh: error: $*" >&2; exit 1; }
note() { echo "build-pool-kernel.sh: $*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
if [ ${#missing[@]} -gt 0 ]; then
  note "installing ${missing[*]}"
  [ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null || die "not root and no sudo; install as root: ${missing[*]}"
  "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install failed for: ${missing[*]}"
fi

# as root, apt would download as user _apt, who may not reach build/
APT=(-q)
[ "$(id -u)" -ne 0 ] || APT+=(-o APT::Sandbox::User=root)
candidate() { apt-cache policy "$SRCPKG" 2>/dev/null | awk '/^ *Candidate:/ && $2 != "(none)" { print $2 }'; }
version=${DMAVM_POOL_KERNEL_SOURCE:-$(candidate)}
if [ -z "$version" ]; then
  note "apt knows no $SRCPKG, updating the package lists"
  "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
  version=$(candidate)
fi
[ -n "$version" ] || die "apt offers no $SRCPKG"
key=$( { echo "$SRCPKG $version"; cat "$FRAGMENT"; } | sha256sum | cut -d' ' -f1)

complete() { # $1 = directory
  [ "$(cat "$1/key" 2>/dev/null)" = "$key" ] && [ -s "$1/Image" ] && [ -s "$1/config" ] && [ -s "$1/kver" ]
}
complete "$OUT" && exit 0

# install DIR's outputs as $OUT, the key last
publish() { # $1 = directory holding Image, config, kver
  local tmp=$OUT.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$1/Image" "$1/config" "$1/kver" "$tmp/"
  echo "$key" > "$tmp/key"
  rm -rf "$OUT"; mv "$tmp" "$OUT"
}
if complete "$XCACHE/$key"; then
  publish "$XCACHE/$key"
  note "$(cat "$OUT/kver") from $XCACHE/$key"
  exit 0
fi

mkdir -p "$CACHE"
deb=$CACHE/${SRCPKG}_${version//:/%3a}_all.deb
if [ ! -s "$deb" ]; then
  note "downloading $SRCPKG=$version"
  (cd "$CACHE" && apt-get "${APT[@]}" download "$SRCPKG=$version" >&2) || die "apt-get download $SRCPKG=$version failed"
  [ -s "$deb" ] || die "apt-get download left no $deb"
fi

work=$ROOT/build/pool-kernel.work.$$
trap 'rm -rf "$work" "$OUT.tmp.$$"' EXIT
rm -rf "$work"; mkdir -p "$work"
note "unpacking $SRCPKG $version"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$SRCPKG.tar.xz" | tar -xJ -C "$work" \
  || die "unpacking usr/src/$SRCPKG.tar.xz of $deb failed"
src=$work/$SRCPKG
[ -f "$src/Makefile" ] || die "$deb holds no kernel tree $SRCPKG/"

(cd "$src" && KCONFIG_ALLCONFIG="$FRAGMENT" "${MAKE[@]}" allnoconfig >&2) || die "make allnoconfig failed"
# Kconfig drops a forced symbol whose dependencies are unmet, silently
refused=$(grep -E '^CONFIG_[A-Z0-9_]+=y$' "$FRAGMENT" | while read -r want; do
  grep -qx "$want" "$src/.config" || echo "${want%=y}"
done)
[ -z "$refused" ] || die "Kconfig left these unset (unmet dependencies?): $(echo $refused)"

jobs=$(nproc 2>/dev/null || echo 2)
note "building Image (make -j$jobs)"
t0=$(date +%s)
(cd "$src" && "${MAKE[@]}" -j"$jobs" Image >&2) || die "make Image failed"
note "built in $(( $(date +%s) - t0 )) s"
mkdir -p "$work/out"
cp "$src/arch/arm64/boot/Image" "$src/.config" "$work/out/"
mv "$work/out/.config" "$work/out/config"
(cd "$src" && "${MAKE[@]}" -s kernelrelease) > "$work/out/kver" || die "make kernelrelease failed"
[ "$(od -An -c -j 56 -N 4 "$work/out/Image" | tr -d ' ')" = 'ARMd' ] || die "the build made no arm64 Image"

# the cache outside the clone is a convenience: failing to fill it is not fatal
if mkdir -p "$XCACHE" 2>/dev/null && rm -rf "$XCACHE/$key.tmp" && mkdir "$XCACHE/$key.tmp" \
   && cp "$work/out/Image" "$work/out/config" "$work/out/kver" "$XCACHE/$key.tmp/" \
   && echo "$key" > "$XCACHE/$key.tmp/key" && rm -rf "${XCACHE:?}/$key" && mv "$XCACHE/$key.tmp" "$XCACHE/$key"; then
  :
else
  note "warning: could not keep the build in $XCACHE"
fi
publish "$work/out"
rm -f "$deb"
note "$(cat "$OUT/kver") ready in $OUT"
