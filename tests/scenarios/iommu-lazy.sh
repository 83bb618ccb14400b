#!/bin/sh
# iommu-lazy.sh - the virtio-iommu scenario (see iommu_scenario in
# linux-lib.sh) with the guest kernel options "".
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="" iommu_scenario
