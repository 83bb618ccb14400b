#!/bin/sh
# arm64-virtio-mmio.sh - virtio-mmio on arm64 behind a virtio-iommu (itself
# on virtio-mmio): a random disk and a scratch disk translated by the IOMMU
# (iommus in the device tree, ACCESS_PLATFORM, an iommu group), a read-only
# disk bypassing it (direct-ram-access=on: no iommus, no ACCESS_PLATFORM, no
# group) and a translated virtio-rng; the guest runs the virtio check
# (reads, pattern write with FLUSH, refused write, 1 MiB from /dev/hwrng),
# dmavm reports its IOMMU counters, the host checks the disk files.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-virtio-mmio
prepare_disks $d
arm64_boot 1 256M virtio --iommu transport=mmio --stats \
  --disk path=$d/rand.img,id=rand --disk path=$d/scratch.img,id=scratch \
  --disk path=$d/ro.img,id=ro,readonly=on,direct-ram-access=on --rng
report_iommu_stats
check_disks $d
rm -rf $d
