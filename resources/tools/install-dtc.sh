#!/usr/bin/env bash
# install-dtc.sh - dtc 1.8 for the device-tree tests, in build/tools, beside
# Debian 12's dtc 1.6 (device-tree-compiler, installed by resources/setup.sh).
#
# The trees are checked by both: 1.6 is what Debian 12 ships, and 1.8 adds
# checks 1.6 lacks (interrupt_provider, interrupt_map, ...). Debian 13 has
# 1.7.2; only unstable (sid) has 1.8. This unpacks sid's
# device-tree-compiler, the libfdt and glibc it is built against, into
# build/tools/dtc-1.8 (resources/tools/debian-unpack.sh), and writes
# build/tools/bin/dtc-1.8, a wrapper that runs that dtc with that glibc's
# dynamic loader (libyaml is the host's libyaml-0-2).
# Idempotent: does nothing when the wrapper runs and says 1.8; concurrent
# runs wait for each other (flock on build/tools/.install-dtc.lock).
# usage: resources/tools/install-dtc.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=$root/build/tools
wrapper=$tools/bin/dtc-1.8
x=$tools/dtc-1.8
die() { echo "install-dtc.sh: error: $*" >&2; exit 1; }
works() { [ -x "$wrapper" ] && "$wrapper" --version 2>/dev/null | grep -q 'Version: DTC 1\.8\.'; }
works && exit 0
mkdir -p "$tools/bin"
exec 9>"$tools/.install-dtc.lock"
flock 9
works && exit 0
echo "install-dtc.sh: dtc 1.8 from Debian sid in $x" >&2
"$root/resources/tools/debian-unpack.sh" sid "$x" device-tree-compiler libfdt1 libc6
lib=$x/usr/lib/x86_64-linux-gnu
[ -x "$x/usr/bin/dtc" ] && [ -e "$lib/ld-linux-x86-64.so.2" ] || die "unpacked packages lack dtc or ld.so"
cat > "$wrapper" <<WRAP
#!/bin/sh
# dtc 1.8 from Debian sid, with sid's glibc (see resources/tools/install-dtc.sh)
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$x/usr/bin/dtc" "\$@"
WRAP
chmod +x "$wrapper"
works || die "the installed dtc is not 1.8: $("$wrapper" --version 2>&1 | tail -3)"
