#!/bin/sh
# arm64-coherency-direct-off.sh - a virtio-blk declared coherent=off with
# ACCESS_PLATFORM and no IOMMU (the guest's dma-direct path, where a
# non-coherent device's coherent allocations are remapped non-cacheable);
# the guest runs the dma-coherency check.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-coherency
prepare_disks $d
arm64_boot 1 256M dma-coherency --disk path=$d/rand.img,id=rand,coherent=off
rm -rf $d
