#!/bin/sh
# iommu-mmio.sh - the virtio-iommu scenario (see iommu_scenario in
# linux-lib.sh) with the IOMMU and the RNG on virtio-mmio: the VIOT's
# virtio-iommu-mmio node, and a translated PCI disk behind an IOMMU that
# is not itself on PCI.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
EXTRA_CMDLINE="" IOMMU_TRANSPORT=mmio RNG_TRANSPORT=mmio iommu_scenario
