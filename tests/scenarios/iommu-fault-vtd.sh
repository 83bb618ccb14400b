#!/bin/sh
# iommu-fault-vtd.sh - the guest-side fault scenario (see fault_scenario in
# linux-lib.sh) through an emulated Intel VT-d unit, which the guest drives
# with "intel_iommu=on".
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="intel_iommu=on" fault_scenario type=vtd
