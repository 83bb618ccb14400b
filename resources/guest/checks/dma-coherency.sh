#!/bin/sh
# dma-coherency.sh - how the guest sets up DMA for the virtio disk with
# serial "rand", to compare with the coherency dmavm declared for it
# (arm64 device tree: dma-coherent). Prints:
#   dt_<node>=coherent:0|1,iommus:<hex>  every virtio, iommu and pcie node
#       of /proc/device-tree (the generated tree as the guest parsed it)
#   virtio=... parent= group= features=  as the virtio check does
#   rand_sha=      the disk's SHA-256 (read whole while the probes count)
#   rand_prot=     the memory attributes dma_pgprot() gave the disk's
#       coherent allocations (its rings), re-made by unbinding and binding
#       its driver: "normal" (cacheable, MT_NORMAL) or "normal-nc"
#       (non-cacheable, MT_NORMAL_NC, what arm64 uses for a non-coherent
#       device); "none" when no allocation went through dma_pgprot()
#       (dma-direct allocations of a coherent device are not remapped)
#   rand_sync_for_device=N  calls of arch_sync_dma_for_device() (cache
#       clean before the device reads or writes a buffer; made only for
#       non-coherent devices) during that rebind and read
#   swiotlb_hiwater=N  most swiotlb slots ever in use: arm64 bounces small
#       kmalloc() buffers of non-coherent devices (a cache line may hold
#       other data; CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC), e.g. virtio-blk's
#       1-byte status, so it stays 0 while every device is coherent
#   vmalloc_dma_remaps=N  /proc/vmallocinfo entries of DMA remaps
#       (dma_common_*_remap: the atomic pools, IOMMU allocations, and
#       dma-direct allocations of non-coherent devices)
# Uses tracefs kprobes (CONFIG_KPROBE_EVENTS) and debugfs.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
T=/sys/kernel/tracing
for n in /proc/device-tree/virtio@* /proc/device-tree/iommu@* /proc/device-tree/pcie@*; do
  [ -e "$n" ] || continue
  coherent=0; [ -e "$n/dma-coherent" ] && coherent=1
  iommus=none; [ -e "$n/iommus" ] && iommus=$(od -An -tx1 -v "$n/iommus" | tr -d ' \n')
  echo "DMAVM dt_$(basename "$n" | tr '@' '_')=coherent:$coherent,iommus:$iommus"
done
rand=
for dev in /sys/bus/virtio/devices/virtio*; do
  [ -e "$dev" ] || continue
  parent_dir=$(dirname "$(readlink -f "$dev")")
  group=none
  [ -e "$parent_dir/iommu_group" ] && group=$(basename "$(readlink "$parent_dir/iommu_group")")
  echo "DMAVM virtio=$(basename "$dev") device=$(cat "$dev/device") parent=$(basename "$parent_dir") group=$group" \
    "features=$(cat "$dev/features")"
done
for blk in /sys/block/vd*; do
  [ "$(cat "$blk/serial" 2>/dev/null)" = rand ] && rand=$(basename "$(readlink -f "$blk/device")")
done
[ -n "$rand" ] || { echo "DMAVM error=no_rand_disk"; exit 1; }
echo 'p:dmasync arch_sync_dma_for_device' > $T/kprobe_events || { echo "DMAVM error=kprobe"; exit 1; }
echo 'r:dmaprot dma_pgprot prot=$retval:x64' >> $T/kprobe_events || { echo "DMAVM error=kretprobe"; exit 1; }
echo > $T/trace
echo 1 > $T/events/kprobes/enable
# re-make the disk's coherent allocations (virtqueue rings) and read it
echo "$rand" > /sys/bus/virtio/drivers/virtio_blk/unbind
echo "$rand" > /sys/bus/virtio/drivers/virtio_blk/bind
sleep 1
disk=$(basename "$(ls -d /sys/bus/virtio/devices/$rand/block/vd* 2>/dev/null | head -1)")
[ -b "/dev/$disk" ] || { echo "DMAVM error=rand_not_rebound"; exit 1; }
echo "DMAVM rand_sha=$(sha256sum "/dev/$disk" | cut -d' ' -f1)"
echo 0 > $T/events/kprobes/enable
# AttrIndx is bits 4:2 of the descriptor: 0 MT_NORMAL, 2 MT_NORMAL_NC (arch/arm64/include/asm/memory.h)
prot=$(grep -o 'prot=0x[0-9a-f]*' $T/trace | sort -u | while read -r p; do
  case $(( (${p#prot=} >> 2) & 7 )) in 0) echo normal ;; 2) echo normal-nc ;; *) echo "attr$(( (${p#prot=} >> 2) & 7 ))" ;; esac
done | sort -u | tr '\n' ',' | sed 's/,$//')
echo "DMAVM rand_prot=${prot:-none}"
echo "DMAVM rand_sync_for_device=$(awk '$1 == "dmasync" {print $2}' $T/kprobe_profile)"
echo "DMAVM swiotlb_hiwater=$(cat /sys/kernel/debug/swiotlb/io_tlb_used_hiwater 2>/dev/null)"
echo "DMAVM vmalloc_dma_remaps=$(grep -c 'dma_common_.*_remap' /proc/vmallocinfo)"
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops')
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 3 -A 2 'WARNING:|BUG:|Oops'; exit 1; }
