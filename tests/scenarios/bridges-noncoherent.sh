#!/bin/sh
# bridges-noncoherent.sh - bridges-scope.sh with segment 1 declared
# non-coherent (coherent=off: _CCA 0 on its root only): the guest must
# still enumerate, read and write it the same way.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/bridges-lib.sh"
bridges_disks
bridges_run --iommu --stats --pci-bridge id=fast,direct-ram-access=on,coherent=off \
  --disk "path=$d/rand.img,id=rand,transport=pci" \
  --disk "path=$d/ro.img,id=ro,readonly=on,transport=pci" \
  --disk "path=$d/rand1.img,id=rand1,transport=pci,bridge=fast" \
  --disk "path=$d/scratch.img,id=scratch,transport=pci,bridge=fast"
