#!/bin/sh
# dma-pool.sh - what the guest makes of restricted DMA pools (arm64 device
# tree: restricted-dma-pool under /reserved-memory, memory-region on a
# device or its PCI host bridge), and whether its disks work. Prints:
#   pools_created=N       kernel log lines "created restricted DMA pool"
#                         (kernel/dma/swiotlb.c, CONFIG_DMA_RESTRICTED_POOL)
#   reserved=NAME,...     the /reserved-memory children of the device tree
#   dt_<node>=memory-region:<hex>|none  every virtio and pcie node, and every
#                         PCI function node below a pcie node
#   virtio=... parent= features=  every virtio device (bit 33, the 34th
#                         character of features, is ACCESS_PLATFORM)
#   <parent>_sha=HEX|timeout|error  each disk read whole, by the node of its
#                         virtio device (a000000.virtio, 0000:00:01.0); a
#                         read that does not finish within 20 s is left
#                         behind (its process may hang in the kernel)
#   <parent>_written=1|0  for the disk named by dmavm.pool_write=<parent>: a
#                         pattern written over its first MiB and flushed
#   swiotlb_<pool>_hiwater=N  most slots ever in use in each restricted pool
#                         (debugfs swiotlb/<pool>/, or <pool>/ at the top of
#                         debugfs when the pool's first device probed before
#                         the late initcall that makes swiotlb/: a built-in
#                         driver), and of the default one as
#                         swiotlb_default_hiwater
#   swiotlb_maps=N        calls of swiotlb_tbl_map_single() (every bounce)
#   dmesg_bad=N
#   ending=poweroff|reset
# A disk whose DMA the host refuses never finishes its probe (its partition
# scan waits forever, holding the device's lock), so the disks must be
# probed asynchronously (module.async_probe=1 on the kernel command line)
# and the VM cannot power off (device_shutdown() would wait for that lock):
# then it ends with an immediate reset (sysrq b, no device shutdown;
# dmavm's status 3). Otherwise `poweroff -f -n` (status 0).
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
T=/sys/kernel/tracing
echo "DMAVM pools_created=$(dmesg | grep -c 'created restricted DMA pool')"
reserved=$(ls /proc/device-tree/reserved-memory 2>/dev/null | grep @ | tr '\n' ',' | sed 's/,$//')
echo "DMAVM reserved=${reserved:-none}"
region() { # $1 = node directory
  if [ -e "$1/memory-region" ]; then od -An -tx1 -v "$1/memory-region" | tr -d ' \n'; else echo none; fi
}
for n in /proc/device-tree/virtio@* /proc/device-tree/pcie@* /proc/device-tree/pcie@*/virtio@*; do
  [ -e "$n" ] || continue
  name=$(echo "${n#/proc/device-tree/}" | tr '@/' '__')
  echo "DMAVM dt_$name=memory-region:$(region "$n")"
done
echo 'p:bounce swiotlb_tbl_map_single' > $T/kprobe_events 2>/dev/null && echo 1 > $T/events/kprobes/enable
for dev in /sys/bus/virtio/devices/virtio*; do
  [ -e "$dev" ] || continue
  parent=$(basename "$(dirname "$(readlink -f "$dev")")")
  echo "DMAVM virtio=$(basename "$dev") device=$(cat "$dev/device") parent=$parent features=$(cat "$dev/features")"
done
write=
for w in $(cat /proc/cmdline); do
  case $w in dmavm.pool_write=*) write=${w#dmavm.pool_write=} ;; esac
done
# Wait for the disks' drivers (probed asynchronously).
sleep 2
stuck=0
for dev in /sys/bus/virtio/devices/virtio*; do
  [ "$(cat "$dev/device")" = 0x0002 ] || continue
  parent=$(basename "$(dirname "$(readlink -f "$dev")")")
  blk=$(ls "$dev/block" 2>/dev/null | head -n 1)
  key=$(echo "$parent" | tr '.:' '__')
  [ -n "$blk" ] || { echo "DMAVM ${key}_sha=no_disk"; stuck=1; continue; }
  out=/tmp/sha.$blk
  ( if sha256sum "/dev/$blk" > $out.tmp 2>/dev/null; then mv $out.tmp $out; else echo error > $out; fi ) &
  i=0
  while [ ! -s $out ] && [ $i -lt 200 ]; do usleep 100000; i=$((i + 1)); done
  if [ -s $out ]; then
    sha=$(cut -d' ' -f1 $out)
    echo "DMAVM ${key}_sha=$sha"
    if [ "$parent" = "$write" ] && [ "$sha" != error ]; then
      if yes dmavm-pattern | head -c 1048576 | dd of="/dev/$blk" bs=65536 conv=fsync 2>/dev/null; then
        echo "DMAVM ${key}_written=1"
      else
        echo "DMAVM ${key}_written=0"
      fi
    fi
  else
    echo "DMAVM ${key}_sha=timeout"
    stuck=1
  fi
done
echo 0 > $T/events/kprobes/enable 2>/dev/null
echo "DMAVM swiotlb_maps=$(awk '$1 == "bounce" {print $2}' $T/kprobe_profile 2>/dev/null)"
echo "DMAVM swiotlb_default_hiwater=$(cat /sys/kernel/debug/swiotlb/io_tlb_used_hiwater 2>/dev/null)"
for p in /sys/kernel/debug/swiotlb/*/ /sys/kernel/debug/*/; do
  [ -e "$p/io_tlb_used_hiwater" ] && [ "$(basename "$p")" != swiotlb ] || continue
  echo "DMAVM swiotlb_$(basename "$p" | tr '@-' '__')_hiwater=$(cat "$p/io_tlb_used_hiwater")"
done
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops')
echo "DMAVM dmesg_bad=$bad"
echo "DMAVM check=dma-pool status=0"
if [ $stuck -eq 1 ]; then
  echo "DMAVM ending=reset"
  echo b > /proc/sysrq-trigger
else
  echo "DMAVM ending=poweroff"
  poweroff -f -n
fi
while :; do sleep 1; done
