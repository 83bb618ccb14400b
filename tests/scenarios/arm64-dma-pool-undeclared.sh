#!/bin/sh
# arm64-dma-pool-undeclared.sh - the proof that dmavm enforces a restricted
# DMA pool: disk "pooled" is confined to a 4 MiB pool, but the device tree
# names the pool on no device (DMAVM_TEST_UNDECLARED_POOLS=1, test only), so
# the guest allocates the disk's rings and buffers anywhere in RAM; dmavm
# must refuse them (DEVICE_NEEDS_RESET at DRIVER_OK, nothing read or
# written) and count the refusals, while disk "rand" next to it, without a
# pool, works. The disks are probed asynchronously so that the refused
# disk's partition scan, which never completes, does not hold up the check;
# the guest then ends with a reset (dmavm's status 3), since powering off
# would wait for that disk.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
d=/tmp/arm64-dma-pool
prepare_disks $d
cp $d/rand.img $d/pooled.img
export DMAVM_TEST_UNDECLARED_POOLS=1
EXTRA_CMDLINE=module.async_probe=1 arm64_boot 1 256M dma-pool --stats \
  --disk path=$d/rand.img,id=rand --disk path=$d/pooled.img,id=pooled,dma-pool=4M
report_pool_stats
echo "DMAVM host_pooled_unchanged=$(cmp -s $d/rand.img $d/pooled.img && echo 1 || echo 0)"
rm -rf $d
