#!/bin/sh
# net-iommu-lazy.sh - the net scenario (net-lib.sh) with the device on
# virtio-pci translated by the virtio-iommu, the guest unmapping lazily
# (iommu.strict=0: IOTLB flushes batched).
# env: DMAVM (dmavm binary), GUEST (guest images)
# l1-cpus: 2 (L1 answers the guest's traffic beside running it: see tests/src/sandbox.rs)
# timeout: 300 (64 MiB each way: translated lazy took up to 122 s)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
EXTRA_CMDLINE="iommu.strict=0" net_scenario ",transport=pci" --iommu
