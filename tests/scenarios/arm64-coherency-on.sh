#!/bin/sh
# arm64-coherency-on.sh - a virtio-blk translated by the virtio-iommu and
# declared coherent=on (device tree: dma-coherent present), next to
# a bypassing coherent disk; the guest runs the dma-coherency check (the
# device tree as it sees it, then its DMA set-up for the devices).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-coherency
prepare_disks $d
arm64_boot 1 256M dma-coherency --iommu transport=mmio --stats \
  --disk path=$d/rand.img,id=rand,coherent=on --disk path=$d/ro.img,id=ro,readonly=on,direct-ram-access=on
report_iommu_stats
rm -rf $d
