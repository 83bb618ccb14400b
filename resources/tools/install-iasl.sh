#!/usr/bin/env bash
# install-iasl.sh - a recent ACPICA iasl for the ACPI tests, in build/tools.
#
# Debian 12's acpica-tools (20200925) predates the VIOT table (ACPICA added
# it in 2021) and dumps it as an unknown table, so the VIOT cannot be
# checked with it. This fetches Debian 13's acpica-tools and the glibc it
# needs (2.38; the host has 2.36) through apt with a private sources list
# (the system's apt configuration is untouched), unpacks both into
# build/tools/trixie and writes build/tools/bin/iasl, a wrapper that runs
# that iasl with its own dynamic loader. Idempotent.
# usage: resources/tools/install-iasl.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=$root/build/tools
wrapper=$tools/bin/iasl
if [ -x "$wrapper" ] && "$wrapper" -v 2>/dev/null | grep -q 'version 2025'; then
  exit 0
fi
die() { echo "install-iasl.sh: error: $*" >&2; exit 1; }
apt_dir=$tools/apt
x=$tools/trixie
rm -rf "$apt_dir" "$x"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$x" "$tools/bin"
echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Get::List-Cleanup=0)
apt-get "${apt_opts[@]}" -q update >/dev/null || die "apt-get update (trixie lists) failed"
(cd "$apt_dir" && apt-get "${apt_opts[@]}" -q download acpica-tools libc6 >/dev/null) \
  || die "apt-get download acpica-tools libc6 (trixie) failed"
for deb in "$apt_dir"/*.deb; do dpkg-deb -x "$deb" "$x"; done
[ -x "$x/usr/bin/iasl" ] && [ -e "$x/usr/lib64/ld-linux-x86-64.so.2" ] || die "unpacked packages lack iasl or ld.so"
cat > "$wrapper" <<WRAP
#!/bin/sh
# iasl from Debian 13's acpica-tools, with Debian 13's glibc (see resources/tools/install-iasl.sh)
exec "$x/usr/lib64/ld-linux-x86-64.so.2" --library-path "$x/usr/lib/x86_64-linux-gnu" "$x/usr/bin/iasl" "\$@"
WRAP
chmod +x "$wrapper"
"$wrapper" -v | grep -q 'version' || die "the installed iasl does not run"
rm -rf "$apt_dir"
