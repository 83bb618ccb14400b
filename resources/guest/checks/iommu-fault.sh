#!/bin/sh
# iommu-fault.sh - a translated device made to DMA where its IOMMU domain
# maps nothing, from inside the guest. Two translated virtio-pci disks:
# rand* (read before and after, its checksum must not change) and victim*
# (sacrificial). The victim's first sector is read through virtio-blk, then
# the victim goes to vfio-pci and vfio-blk-fault drives it from user space:
# two reads into unmapped IOVAs, which must fail, and one into a mapped
# buffer, which must return that first sector. The guest kernel's IOMMU
# driver logs each fault event the IOMMU raised; they are reported as
#   DMAVM iommu_fault=<reason>,<device>,<address>,<access>
# (virtio-iommu: "<reason> fault from EP <endpoint> at <address> [RWX]";
# VT-d: "DMAR: [DMA Read|Write ...] Request device [bb:dd.f] fault addr
# <address>", reason "dmar", device the requester's bus:dev.fn).
fail=0
# The faults are logged while this check prints: keep the kernel's messages
# off the console (they stay in dmesg), so that none splits a DMAVM line.
dmesg -n 1
sha_of_serial() {
  blk=$(grep -lx "$1" /sys/block/vd*/serial 2>/dev/null | head -1)
  [ -n "$blk" ] || { echo "DMAVM fault_error=no_disk_$1" >&2; return 1; }
  name=$(basename "$(dirname "$blk")")
  if [ -n "${2:-}" ]; then
    dd if="/dev/$name" bs=512 count=1 2>/dev/null | sha256sum | cut -d' ' -f1
  else
    sha256sum "/dev/$name" | cut -d' ' -f1
  fi
}
sha=$(sha_of_serial rand) || fail=1
echo "DMAVM rand_sha=$sha"
sha=$(sha_of_serial victim sector) || fail=1
echo "DMAVM victim_sector0_sha=$sha"
# allow_unsafe_interrupts: type1 refuses (EPERM) a group whose MSIs are not
# isolated, which neither IOMMU here claims; vfio-blk-fault uses no interrupts.
for m in irqbypass vfio "vfio_iommu_type1 allow_unsafe_interrupts=1" vfio-pci-core vfio-pci; do
  # shellcheck disable=SC2086 # module name and its parameters
  set -- $m
  name=$1; shift
  [ -d "/sys/module/$(echo "$name" | tr - _)" ] && continue
  insmod "/lib/modules/$name.ko" "$@" 2>/dev/null || { echo "DMAVM fault_error=insmod_$name"; fail=1; }
done
blk=$(grep -lx victim /sys/block/vd*/serial | head -1)
pci=$(dirname "$(readlink -f "$(dirname "$blk")/device")")
bdf=$(basename "$pci")
group=$(basename "$(readlink "$pci/iommu_group")")
echo "DMAVM victim_bdf=$bdf victim_group=$group"
echo "$bdf" > "$pci/driver/unbind"
echo vfio-pci > "$pci/driver_override"
echo "$bdf" > /sys/bus/pci/drivers_probe
[ "$(basename "$(readlink "$pci/driver")")" = vfio-pci ] || { echo "DMAVM fault_error=bind_vfio"; fail=1; }
/bin/vfio-blk-fault "$group" "$bdf" /tmp/sector || fail=1
[ -s /tmp/sector ] && echo "DMAVM fault_control_sha=$(sha256sum /tmp/sector | cut -d' ' -f1)"
# The fault events reach the guest's IOMMU driver asynchronously.
faults() {
  dmesg | sed -nE \
    -e 's/.* ([a-z]+) fault from EP ([0-9]+)( PASID [0-9]+)? at (0x[0-9a-f]+) \[([RWX]*)\].*/\1,\2,\4,\5/p' \
    -e 's/.*DMAR: \[DMA (Read|Write)[^]]*\] Request device \[([0-9a-f:.]+)\] fault addr (0x)?([0-9a-f]+).*/dmar,\2,0x\4,\1/p'
}
i=0
while [ "$(faults | wc -l)" -lt 2 ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
faults | sed 's/^/DMAVM iommu_fault=/'
sha=$(sha_of_serial rand) || fail=1
echo "DMAVM rand_sha_after=$sha"
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops')
echo "DMAVM dmesg_bad=$bad"
[ $fail -eq 0 ] || exit 1
poweroff -f
