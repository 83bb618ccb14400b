#!/bin/sh
# arm64-net-mmio.sh - virtio-net on arm64 over virtio-mmio, bypassing any
# IOMMU (direct-ram-access=on: guest-physical buffers, no ACCESS_PLATFORM):
# its TAP in a network namespace of L1, the net check (net-lib.sh) with
# NET_MIB (default here 1: the arm64 L1 is emulated).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
NET_MIB=${NET_MIB:-1} net_scenario ",transport=mmio,direct-ram-access=on"
