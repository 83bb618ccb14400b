#!/bin/sh
# arm64-dma-pool.sh - restricted DMA pools as the guest uses them: on
# virtio-mmio, disk "rand" without a pool and disk "pooled" (a copy of it)
# confined to a 4 MiB pool, which the guest reads whole and then overwrites
# with a pattern; on PCI, host bridge "bounce" (segment 1) with one 4 MiB
# pool for its two disks. dmavm reports each pool device's accesses, the
# host checks the written pattern after power-off. Boots $GUEST/pool/Image,
# the guest kernel with CONFIG_DMA_RESTRICTED_POOL=y
# (resources/guest/arm64/build-pool-kernel.sh).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-dma-pool
prepare_disks $d
cp $d/rand.img $d/pooled.img
cp $d/rand.img $d/bridged0.img
cp $d/rand.img $d/bridged1.img
KERNEL=$GUEST/pool/Image EXTRA_CMDLINE="module.async_probe=1 dmavm.pool_write=a001000.virtio" arm64_boot 1 512M dma-pool --stats \
  --disk path=$d/rand.img,id=rand --disk path=$d/pooled.img,id=pooled,dma-pool=4M \
  --pci-bridge id=bounce,dma-pool=4M \
  --disk path=$d/bridged0.img,id=bridged0,transport=pci,bridge=bounce \
  --disk path=$d/bridged1.img,id=bridged1,transport=pci,bridge=bounce
report_pool_stats
expected=$(yes dmavm-pattern | head -c 1048576 | sha256sum | cut -d' ' -f1)
echo "DMAVM host_pooled_match=$([ "$expected" = "$(head -c 1048576 $d/pooled.img | sha256sum | cut -d' ' -f1)" ] && echo 1 || echo 0)"
rm -rf $d
