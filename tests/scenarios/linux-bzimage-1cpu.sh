#!/bin/sh
# linux-bzimage-1cpu.sh - boot the Debian guest (vmlinuz, 1 vCPU(s), 256M) with check basic,
# letting dmavm choose how to enter the bzImage (its log says which way).
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
boot_guest_with vmlinuz 1 256M basic --log-level info
