#!/bin/sh
# net-mmio.sh - the net scenario (net-lib.sh) with the device on
# virtio-mmio, bypassing any IOMMU (direct-ram-access=on): guest-physical
# buffers, no ACCESS_PLATFORM.
# env: DMAVM (dmavm binary), GUEST (guest images)
# timeout: 300 (64 MiB each way: up to 52 s measured, more on a loaded host)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
net_scenario ",transport=mmio,direct-ram-access=on"
