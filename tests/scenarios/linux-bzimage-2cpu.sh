#!/bin/sh
# linux-bzimage-2cpu.sh - boot the Debian guest (vmlinuz, 2 vCPU(s), 512M) with check basic.
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
boot_guest vmlinuz 2 512M basic
