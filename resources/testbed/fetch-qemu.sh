#!/bin/bash
# fetch-qemu.sh - the project's x86 QEMU: Debian 13's qemu-system-x86 with
# the shared libraries it needs, downloaded (never installed) through a
# private apt state and unpacked into build/qemu-x86 (bin/qemu-system-x86_64,
# a wrapper; dist/ with the binary, its dynamic loader, exactly the libraries
# it needs and the firmware of -kernel boots of q35 and microvm). It runs the
# x86 sandbox's emulated host (L1), and resources/testbed/build-l1.sh carries
# dist/ into L1 as the QEMU the benchmarks compare dmavm with.
#
# Why not Debian 12's QEMU 7.2: under TCG with nested SVM it loses the
# wakeup of a halted vCPU for good (the vCPU stays halted with interrupts
# enabled and the timer's vector pending in its local APIC), which freezes
# L1 within minutes of sustained L2 load; QEMU 10.0 does not. The test bed
# still watches for that state (tests/src/l1_monitor.rs), whichever QEMU runs.
#
# Only lib* packages of the dependency closure are unpacked (no maintainer
# scripts run). Does nothing when build/qemu-x86 is complete and was made by
# this version of the script.
# usage: resources/testbed/fetch-qemu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/build/qemu-x86
APTDIR=$ROOT/build/apt-trixie
DEBS=$ROOT/build/cache/qemu-x86
SUITE=trixie
# What -kernel boots of q35 (SeaBIOS) and microvm (qboot or SeaBIOS, PVH)
# read from the firmware path.
FIRMWARE=(bios-256k.bin bios-microvm.bin qboot.rom linuxboot_dma.bin pvh.bin kvmvapic.bin)
die() { echo "fetch-qemu.sh: error: $*" >&2; exit 1; }
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
[ -x "$OUT/bin/qemu-system-x86_64" ] && [ "$(cat "$OUT/complete" 2>/dev/null)" = "$recipe" ] && exit 0
command -v readelf >/dev/null || die "readelf is missing (binutils; run resources/setup.sh)"

mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS"
echo "deb http://deb.debian.org/debian $SUITE main" > "$APTDIR/sources.list"
APT=(-q -o "Dir::Etc::SourceList=$APTDIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o Dir::State::status=/dev/null
     -o APT::Get::List-Cleanup=0)
[ "$(id -u)" -ne 0 ] || APT+=(-o APT::Sandbox::User=root)
apt-get "${APT[@]}" update >/dev/null || die "apt-get update ($SUITE lists) failed"
pkgs=$(apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances qemu-system-x86 2>/dev/null | grep -v '^ \|<' | sort -u \
       | grep -E '^(qemu-system-x86|qemu-system-data|seabios|lib|zlib)' || true)
[ -n "$pkgs" ] || die "apt knows no qemu-system-x86 in $SUITE"
missing=()
for p in $pkgs; do
  ls "$DEBS/${p}_"*_amd64.deb >/dev/null 2>&1 || ls "$DEBS/${p}_"*_all.deb >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  (cd "$DEBS" && apt-get "${APT[@]}" download "${missing[@]}" >"$DEBS/download.log" 2>&1) \
    || die "apt-get download failed: $(tail -5 "$DEBS/download.log")"
fi
rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp/root"
for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$OUT.tmp/root" || die "dpkg-deb -x $d failed"; done
R=$OUT.tmp/root
[ -x "$R/usr/bin/qemu-system-x86_64" ] || die "no qemu-system-x86_64 in the unpacked packages"
[ -e "$R/usr/lib64/ld-linux-x86-64.so.2" ] || die "no dynamic loader in the unpacked libc6"
D=$OUT.tmp/dist
mkdir -p "$D/lib" "$D/bin" "$D/share" "$OUT.tmp/bin"
cp "$R/usr/bin/qemu-system-x86_64" "$D/bin/"
cp -L "$R/usr/lib64/ld-linux-x86-64.so.2" "$D/lib/"
# The closure of the binary's NEEDED libraries, flat in lib/: the loader
# resolves them there before anything of the host's.
"$ROOT/resources/tools/copy-needed-libs.sh" readelf "$R" x86_64-linux-gnu "$R/usr/bin/qemu-system-x86_64" "$D/lib" \
  || die "the libraries of qemu-system-x86_64 are incomplete"
for f in "${FIRMWARE[@]}"; do
  src=$( { ls "$R/usr/share/qemu/$f" "$R/usr/share/seabios/$f" 2>/dev/null || true; } | head -1)
  [ -n "$src" ] || die "firmware $f is in no unpacked package"
  cp -L "$src" "$D/share/$f"
done
version=$(dpkg-deb -f "$DEBS"/qemu-system-x86_*.deb Version)
# -L points QEMU at this firmware only, never the host's /usr/share/qemu
# (another QEMU version's option ROMs).
cat > "$OUT.tmp/bin/qemu-system-x86_64" <<WRAP
#!/bin/sh
# Debian 13's qemu-system-x86 $version with its own loader, libraries and firmware
# (resources/testbed/fetch-qemu.sh)
exec "$OUT/dist/lib/ld-linux-x86-64.so.2" --library-path "$OUT/dist/lib" "$OUT/dist/bin/qemu-system-x86_64" -L "$OUT/dist/share" "\$@"
WRAP
chmod +x "$OUT.tmp/bin/qemu-system-x86_64"
rm -rf "$R" "$OUT"; mv "$OUT.tmp" "$OUT"
"$OUT/bin/qemu-system-x86_64" --version | grep -q 'QEMU emulator version' \
  || { rm -rf "$OUT"; die "the unpacked qemu-system-x86_64 does not run"; }
echo "$recipe" > "$OUT/complete"
echo "fetch-qemu.sh: $(du -sh "$OUT/dist" | cut -f1) in $OUT/dist (qemu-system-x86_64 $version and $(ls "$OUT/dist/lib" | wc -l) libraries)" >&2
