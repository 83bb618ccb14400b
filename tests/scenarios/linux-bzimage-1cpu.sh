#!/bin/sh
# linux-bzimage-1cpu.sh - boot the Debian guest (vmlinuz, 1 vCPU(s), 256M) with check basic.
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
boot_guest vmlinuz 1 256M basic
