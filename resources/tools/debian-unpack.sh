#!/usr/bin/env bash
# debian-unpack.sh - unpack Debian packages of another suite into a private
# directory, without installing them: for the checkers whose Debian 12
# versions are missing or too old (fwts, dtc 1.8). apt runs with a private
# sources list, lists and cache under DEST.apt (the system's apt configuration
# and package database are untouched), `apt-get download` fetches exactly the
# packages named (no dependency resolution: the caller names the libraries
# the host lacks, such as a newer glibc), and `dpkg-deb -x` unpacks each into
# DEST. DEST is replaced whole. The caller writes the wrapper that runs a
# program from DEST with DEST's dynamic loader and libraries.
# usage: resources/tools/debian-unpack.sh SUITE DEST PACKAGE[/SUITE]...
set -euo pipefail
die() { echo "debian-unpack.sh: error: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "usage: debian-unpack.sh SUITE DEST PACKAGE..."
suite=$1 dest=$2; shift 2
apt_dir=$dest.apt
rm -rf "$apt_dir" "$dest"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dest"
echo "deb http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Get::List-Cleanup=0)
apt-get "${apt_opts[@]}" -q update >/dev/null || die "apt-get update ($suite lists) failed"
(cd "$apt_dir" && apt-get "${apt_opts[@]}" -q download "$@" >"$apt_dir/download.log" 2>&1) \
  || die "apt-get download $* ($suite) failed: $(tail -5 "$apt_dir/download.log")"
for p in "$@"; do
  compgen -G "$apt_dir/${p%%/*}_*.deb" >/dev/null || die "apt-get download did not fetch ${p%%/*} ($suite)"
done
for deb in "$apt_dir"/*.deb; do
  dpkg-deb -x "$deb" "$dest" || die "dpkg-deb -x $deb failed"
  echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >> "$dest/.packages"
done
rm -rf "$apt_dir"
