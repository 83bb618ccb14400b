#!/usr/bin/env bash
# install-fwts.sh - the Firmware Test Suite (fwts) for the ACPI tests, in
# build/tools.
#
# Debian 12 has no fwts package; Debian 13 has none either, only unstable
# (sid) does. This unpacks sid's fwts (its own libfwts, ACPICA and iasl
# libraries are inside the package), the glibc and libfdt it is built
# against, into build/tools/fwts (resources/tools/debian-unpack.sh), and
# writes build/tools/bin/fwts, a wrapper that runs it with that glibc's
# dynamic loader; the GLib and zlib it also links are the host's
# (libglib2.0-0, zlib1g: resources/setup.sh installs them).
# vmm/tests/fwts.rs runs it on table files only (--table-path).
# Idempotent: does nothing when the wrapper runs; concurrent runs wait for
# each other (flock on build/tools/.install-fwts.lock).
# usage: resources/tools/install-fwts.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=$root/build/tools
wrapper=$tools/bin/fwts
x=$tools/fwts
die() { echo "install-fwts.sh: error: $*" >&2; exit 1; }
works() { [ -x "$wrapper" ] && "$wrapper" --version 2>/dev/null | grep -q 'Version V'; }
works && exit 0
mkdir -p "$tools/bin"
exec 9>"$tools/.install-fwts.lock"
flock 9
works && exit 0
echo "install-fwts.sh: fwts from Debian sid in $x" >&2
"$root/resources/tools/debian-unpack.sh" sid "$x" fwts libc6 libfdt1
lib=$x/usr/lib/x86_64-linux-gnu
[ -x "$x/usr/bin/fwts" ] && [ -e "$lib/ld-linux-x86-64.so.2" ] || die "unpacked packages lack fwts or ld.so"
cat > "$wrapper" <<WRAP
#!/bin/sh
# fwts from Debian sid, with sid's glibc (see resources/tools/install-fwts.sh)
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib:$lib/fwts" "$x/usr/bin/fwts" "\$@"
WRAP
chmod +x "$wrapper"
works || die "the installed fwts does not run: $("$wrapper" --version 2>&1 | tail -3)"
