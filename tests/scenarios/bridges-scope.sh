#!/bin/sh
# bridges-scope.sh - two PCI host bridges as two DMA domains. Segment 0
# (pci0) is translated by the virtio-iommu at 0000:00:01.0 and holds the
# disks rand (00:02.0) and ro (00:03.0, read-only); segment 1 (bridge
# "fast", direct-ram-access=on) bypasses the IOMMU as a whole and holds
# rand1 (0001:00:01.0) and scratch (0001:00:02.0), which inherit the bypass.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/bridges-lib.sh"
bridges_disks
bridges_run --iommu --stats --pci-bridge id=fast,direct-ram-access=on \
  --disk "path=$d/rand.img,id=rand,transport=pci" \
  --disk "path=$d/ro.img,id=ro,readonly=on,transport=pci" \
  --disk "path=$d/rand1.img,id=rand1,transport=pci,bridge=fast" \
  --disk "path=$d/scratch.img,id=scratch,transport=pci,bridge=fast"
