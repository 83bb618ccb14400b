#!/bin/sh
# linux-bzimage-2cpu.sh - boot the Debian guest (vmlinuz, 2 vCPU(s), 512M) with check basic,
# entering the bzImage through the 64-bit boot protocol (the guest
# decompresses itself), as dmavm does for bzImages without a PVH entry.
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
export DMAVM_BZIMAGE_ENTRY=long64
boot_guest_with vmlinuz 2 512M basic --log-level info
