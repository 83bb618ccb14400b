#!/bin/sh
# iommu-strict.sh - the virtio-iommu scenario (see iommu_scenario in
# linux-lib.sh) with the guest kernel options "iommu.strict=1".
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="iommu.strict=1" iommu_scenario
