#!/bin/sh
# vtd-noncoherent.sh - the VT-d scenario (see vtd_scenario in linux-lib.sh)
# with the unit's page walks declared not coherent (coherent=off: ECAP.C =
# 0) and the guest kernel options "intel_iommu=on iommu.strict=0": the guest
# must flush its page-table updates from the CPU caches.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="intel_iommu=on iommu.strict=0" vtd_scenario coherent=off
