#!/bin/sh
# net-iommu-lazy.sh - the net scenario (net-lib.sh) with the device on
# virtio-pci translated by the virtio-iommu, the guest unmapping lazily
# (iommu.strict=0: IOTLB flushes batched).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
# 4 MiB each way, not net-lib's 64: see net-lib.sh.
EXTRA_CMDLINE="iommu.strict=0" NET_MIB=${NET_MIB:-4} net_scenario ",transport=pci" --iommu
