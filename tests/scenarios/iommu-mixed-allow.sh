#!/bin/sh
# iommu-mixed-allow.sh - the mixed-coherency scenario (see
# mixed_coherency_scenario in linux-lib.sh) with --iommu mixed-coherency=allow.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
mixed_coherency_scenario allow
