#!/bin/sh
# bridges-iommu-segment1.sh - the virtio-iommu on segment 1 (bridge "io",
# at 0001:00:01.0) translating disks on both segments: rand (0000:00:01.0,
# endpoint 0x8), rand1 (0001:00:02.0, endpoint 0x10010) and scratch on
# virtio-mmio (endpoint 0x20000, above both segments); ro (0000:00:02.0)
# bypasses it on its own (direct-ram-access=on on a translated bridge).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/bridges-lib.sh"
bridges_disks
bridges_run --iommu bridge=io --stats --pci-bridge id=io \
  --disk "path=$d/rand.img,id=rand,transport=pci" \
  --disk "path=$d/ro.img,id=ro,readonly=on,transport=pci,direct-ram-access=on" \
  --disk "path=$d/rand1.img,id=rand1,transport=pci,bridge=io" \
  --disk "path=$d/scratch.img,id=scratch,transport=mmio"
