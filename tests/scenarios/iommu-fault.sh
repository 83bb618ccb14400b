#!/bin/sh
# iommu-fault.sh - the guest-side fault scenario (see fault_scenario in
# linux-lib.sh) through a virtio-iommu on PCI.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
fault_scenario transport=pci
