#!/usr/bin/env bash
# Assembles the test payloads (flat binaries linked at 0x100000) into OUTDIR.
# usage: resources/payloads/build.sh OUTDIR
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
for tool in as ld objcopy; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found: install binutils (resources/setup.sh)" >&2; exit 1; }
done
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for src in "$here"/*.S; do
  name=$(basename "$src" .S)
  as --64 -I "$here" -o "$tmp/$name.o" "$src"
  ld -m elf_x86_64 --no-warn-rwx-segments -N -e 0x100000 -Ttext=0x100000 -o "$tmp/$name.elf" "$tmp/$name.o"
  objcopy -O binary "$tmp/$name.elf" "$out/$name.bin.tmp"
  mv "$out/$name.bin.tmp" "$out/$name.bin"
done
