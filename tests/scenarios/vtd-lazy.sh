#!/bin/sh
# vtd-lazy.sh - the VT-d scenario (see vtd_scenario in linux-lib.sh) with
# the guest kernel options "intel_iommu=on iommu.strict=0".
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="intel_iommu=on iommu.strict=0" vtd_scenario
