#!/bin/bash
# copy-needed-libs.sh - copy the closure of a program's NEEDED shared
# libraries out of an unpacked Debian root into one flat directory, for a
# program run through its own dynamic loader with --library-path DEST (the
# project's QEMUs: resources/testbed/fetch-qemu.sh,
# resources/testbed-arm64/fetch-qemu.sh). A library found in no package
# of ROOT is an error naming the library and who needs it.
# usage: resources/tools/copy-needed-libs.sh READELF ROOT MULTIARCH PROGRAM DEST
#   READELF    the readelf for PROGRAM's architecture
#   ROOT       the unpacked packages (ROOT/lib/MULTIARCH, ROOT/usr/lib/MULTIARCH)
#   MULTIARCH  e.g. x86_64-linux-gnu
set -euo pipefail
die() { echo "copy-needed-libs.sh: error: $*" >&2; exit 1; }
[ $# -eq 5 ] || die "usage: copy-needed-libs.sh READELF ROOT MULTIARCH PROGRAM DEST"
readelf=$1 root=$2 multiarch=$3 program=$4 dest=$5
mkdir -p "$dest"
todo=("$program"); seen=" "
while [ ${#todo[@]} -gt 0 ]; do
  f=${todo[0]}; todo=("${todo[@]:1}")
  for n in $("$readelf" -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case $seen in *" $n "*) continue ;; esac
    seen="$seen$n "
    lib=$( { ls "$root/lib/$multiarch/$n" "$root/usr/lib/$multiarch/$n" 2>/dev/null || true; } | head -1)
    [ -n "$lib" ] || die "$n (needed by $(basename "$f")) is in no unpacked package"
    cp -L "$lib" "$dest/$n"
    todo+=("$lib")
  done
done
