#!/bin/sh
# net-iommu-lazy.sh - the net scenario (net-lib.sh) with the device on
# virtio-pci translated by the virtio-iommu, the guest unmapping lazily
# (iommu.strict=0: IOTLB flushes batched).
# env: DMAVM (dmavm binary), GUEST (guest images)
# timeout: 600 (64 MiB each way, translated: 88-146 s measured on an idle
# one-vCPU L1; a CI run on a busier machine took over 300 s)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
EXTRA_CMDLINE="iommu.strict=0" net_scenario ",transport=pci" --iommu
