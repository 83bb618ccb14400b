#!/bin/sh
# linux-pvh-2cpu.sh - boot the Debian guest (vmlinux, 2 vCPU(s), 256M) with check basic.
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
boot_guest vmlinux 2 256M basic
