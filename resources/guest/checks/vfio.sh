#!/bin/sh
# vfio.sh - the mixed-coherency check. The guest has two translated
# virtio-pci disks, serials rand* and rand1*, on host bridges of different
# coherency. First both are used through virtio-blk (their checksums, as
# virtio.sh prints them: each has its own default DMA domain), then both
# are handed to vfio-pci and put in one VFIO container (vfio-domains), so
# that the kernel tries to share one IOMMU domain between them. Prints the
# iommu groups, `DMAVM vfio_container=ok` when the container works, and the
# domains' view from sysfs is left to dmavm's counters.
fail=0
for blk in /sys/block/vd*; do
  [ -e "$blk" ] || continue
  name=$(basename "$blk"); serial=$(cat "$blk/serial" 2>/dev/null)
  case $serial in
    rand*) echo "DMAVM ${serial}_sha=$(sha256sum "/dev/$name" | cut -d' ' -f1)" ;;
  esac
done
# allow_unsafe_interrupts: type1 refuses (EPERM) a group whose MSIs are
# not isolated, and a virtio-iommu on x86 remaps no interrupts; this check
# is about DMA domains, not about interrupt isolation.
for m in irqbypass vfio "vfio_iommu_type1 allow_unsafe_interrupts=1" vfio-pci-core vfio-pci; do
  # shellcheck disable=SC2086 # module name and its parameters
  set -- $m
  name=$1; shift
  insmod "/lib/modules/$name.ko" "$@" 2>/dev/null || { echo "DMAVM vfio_error=insmod_$name"; fail=1; }
done
groups=""
for serial in rand rand1; do
  blk=$(grep -lx "$serial" /sys/block/vd*/serial | head -1)
  [ -n "$blk" ] || { echo "DMAVM vfio_error=no_disk_$serial"; fail=1; continue; }
  pci=$(dirname "$(readlink -f "$(dirname "$blk")/device")")
  bdf=$(basename "$pci")
  group=$(basename "$(readlink "$pci/iommu_group")")
  echo "DMAVM vfio_${serial}_bdf=$bdf vfio_${serial}_group=$group"
  echo "$bdf" > "$pci/driver/unbind"
  echo vfio-pci > "$pci/driver_override"
  echo "$bdf" > /sys/bus/pci/drivers_probe
  [ "$(basename "$(readlink "$pci/driver")")" = vfio-pci ] || { echo "DMAVM vfio_error=bind_$serial"; fail=1; }
  groups="$groups $group"
done
# shellcheck disable=SC2086 # two group numbers
/bin/vfio-domains $groups || fail=1
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops')
echo "DMAVM dmesg_bad=$bad"
[ $fail -eq 0 ] || exit 1
poweroff -f
