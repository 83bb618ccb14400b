#!/usr/bin/env bash
# boot.sh - the README's first command: install what dmavm needs, build it,
# and run the main job. Today that is a payload demo (COM1 output, 2 vCPUs
# reading their local APIC IDs, the exit device); booting the default Linux
# guest replaces it once the Linux boot protocol lands.
# usage: resources/boot.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
resources/setup.sh
cargo build --release -q -p dmavm
resources/payloads/build.sh build/payloads
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "boot.sh: error: /dev/kvm is missing or not accessible" >&2; exit 1; }
echo "boot.sh: dmavm run --payload build/payloads/hello.bin (exits with the status the guest chooses: 7)"
set +e
target/release/dmavm run --payload build/payloads/hello.bin --memory 64M
echo "boot.sh: dmavm exited with $?"
echo "boot.sh: dmavm run --payload build/payloads/apic-id.bin --cpus 2"
target/release/dmavm run --payload build/payloads/apic-id.bin --cpus 2 --memory 64M
echo "boot.sh: dmavm exited with $?"
