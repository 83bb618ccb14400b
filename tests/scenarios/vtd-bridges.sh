#!/bin/sh
# vtd-bridges.sh - two PCI host bridges under an emulated VT-d unit, with
# the guest kernel option "intel_iommu=on": bridge "fast" (segment 1,
# direct-ram-access=on) bypasses the unit as a whole and holds the disk
# rand1 (0001:00:01.0); bridge "safe" (segment 2) is translated and holds
# the disk rand (0002:00:01.0). Segment 0 holds no device, so the DMAR has
# one DRHD: segment 2's, with rand in its scope. Runs the vtd check and
# reports its lines, the host's checksums of both disks and the VT-d
# counters per device.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/vtd-bridges
rm -rf $d; mkdir -p $d
for disk in rand rand1; do
  dd if=/dev/urandom of=$d/$disk.img bs=1048576 count=2 2>/dev/null
  echo "DMAVM host_${disk}_sha=$(sha256sum $d/$disk.img | cut -d' ' -f1)"
done
EXTRA_CMDLINE="intel_iommu=on" boot_guest_with vmlinux 1 256M vtd --iommu type=vtd --stats \
  --pci-bridge id=fast,direct-ram-access=on --pci-bridge id=safe \
  --disk "path=$d/rand.img,id=rand,transport=pci,bridge=safe" \
  --disk "path=$d/rand1.img,id=rand1,transport=pci,bridge=fast"
report_vtd_stats
rm -rf $d
