#!/bin/sh
# virtio.sh - exercise every virtio disk and RNG the host gave this guest,
# finding disks by the serial the host set (id=NAME, from VIRTIO_BLK_T_GET_ID):
#   rand*     read it all and print its SHA-256 (the host compares)
#   scratch*  write a known pattern over its first MiB, sync (FLUSH)
#   ro*       a write must fail; /sys says read-only
# /dev/hwrng: read 1 MiB. Every virtio device: print its device ID and the
# negotiated feature bits (64 chars, bit 0 first). Ends by powering off, so
# dirty data must have reached the host through FLUSH (unless
# VIRTIO_CHECK_NO_POWEROFF=1: the caller powers off).
fail=0
for dev in /sys/bus/virtio/devices/virtio*; do
  [ -e "$dev" ] || continue
  parent_dir=$(dirname "$(readlink -f "$dev")")
  parent=$(basename "$parent_dir")
  group=none
  [ -e "$parent_dir/iommu_group" ] && group=$(basename "$(readlink "$parent_dir/iommu_group")")
  echo "DMAVM virtio=$(basename "$dev") device=$(cat "$dev/device") parent=$parent group=$group" \
    "features=$(cat "$dev/features")"
done
for blk in /sys/block/vd*; do
  [ -e "$blk" ] || continue
  name=$(basename "$blk"); serial=$(cat "$blk/serial" 2>/dev/null)
  echo "DMAVM disk=$name serial=$serial ro=$(cat "$blk/ro") sectors=$(cat "$blk/size")"
  case $serial in
    rand*) echo "DMAVM ${serial}_sha=$(sha256sum "/dev/$name" | cut -d' ' -f1)" ;;
    scratch*)
      if yes dmavm-pattern | head -c 1048576 | dd of="/dev/$name" bs=65536 2>/dev/null && sync; then
        echo "DMAVM ${serial}_written=1"
      else
        echo "DMAVM ${serial}_written=0"; fail=1
      fi ;;
    ro*)
      if dd if=/dev/zero of="/dev/$name" bs=4096 count=1 oflag=direct 2>/dev/null; then
        echo "DMAVM ${serial}_write_refused=0"; fail=1
      else
        echo "DMAVM ${serial}_write_refused=1"
      fi ;;
  esac
done
if [ -e /dev/hwrng ]; then
  echo "DMAVM hwrng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)" \
    "hwrng_bytes=$(dd if=/dev/hwrng bs=65536 count=16 2>/dev/null | wc -c)"
fi
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops|virtio.*(error|failed)')
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 5 'WARNING:|BUG:|Oops|virtio.*(error|failed)'; fail=1; }
[ $fail -eq 0 ] || exit 1
# A check that runs this one first and reports more after it (vtd.sh) powers
# off itself.
[ "${VIRTIO_CHECK_NO_POWEROFF:-}" = 1 ] || poweroff -f
