#!/bin/sh
# arm64-virtio-pci.sh - virtio-pci on arm64: the PCI host bridge
# (pci-host-ecam-generic) with MSI-X through the GICv3 ITS (msi-map), a
# virtio-iommu on PCI (a child node of the bridge) translating a PCI disk,
# a virtio-mmio disk and the PCI RNG (iommu-map, iommus), and a PCI disk
# bypassing it (direct-ram-access=on: outside iommu-map); the guest runs the
# virtio check, dmavm reports its IOMMU counters, the host checks the files.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-virtio-pci
prepare_disks $d
arm64_boot 2 256M virtio --iommu transport=pci --stats \
  --disk path=$d/rand.img,id=rand,transport=pci --disk path=$d/scratch.img,id=scratch,transport=mmio \
  --disk path=$d/ro.img,id=ro,readonly=on,transport=pci,direct-ram-access=on --rng transport=pci
report_iommu_stats
check_disks $d
rm -rf $d
