#!/bin/sh
# linux-status.sh - boot the Debian guest (vmlinux, 1 vCPU(s), 256M) with check status7.
# The Rust test reads the DMAVM lines; this script fails only if dmavm
# could not be run at all.
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
boot_guest vmlinux 1 256M status7
