#!/bin/sh
# arm64-linux-2cpu.sh - as arm64-linux-1cpu.sh with 2 vCPUs: the secondary
# starts powered off and comes up through PSCI CPU_ON.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
arm64_boot 2 256M basic
