#!/bin/sh
# arm64-linux-1cpu.sh - boot the Debian arm64 guest (Image, 1 vCPU, 256M)
# under the aarch64 dmavm in the arm64 sandbox with check basic: the kernel
# reaches init on the device tree dmavm generates, its console is the
# 16550A (ttyS0), and `poweroff -f` (PSCI SYSTEM_OFF) ends dmavm with 0.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
arm64_boot 1 256M basic
