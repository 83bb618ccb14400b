#!/bin/sh
# arm64-bench-pool.sh - what bouncing through a restricted DMA pool costs:
# guest sequential read of a 256 MiB virtio-mmio disk (dd, 1 MiB blocks,
# 3 reads per boot, guest cache dropped before each; resources/guest/checks/
# ddread.sh) with the disk confined to a 4 MiB pool and without, boots
# alternating, the same pool kernel ($GUEST/pool/Image) in both. Prints
# "BENCH dmavm <pool|nopool> <MiB/s>" per read and dmavm's pool counters of
# the pooled boots as "DMAVM pool_bench=<inside>,<refused>".
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
disk=/tmp/bench-pool-disk.img
log=/tmp/bench-pool.log
dd if=/dev/urandom of=$disk bs=1048576 count=256 2>/dev/null
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=ddread"
for round in 1 2; do
  for mode in nopool pool; do
    pool=
    [ $mode = nopool ] || pool=,dma-pool=4M
    "$DMAVM" run --kernel "$GUEST/pool/Image" --initrd "$GUEST/initramfs.cpio.gz" --memory 512M --stats \
      --cmdline "$APPEND dmavm.bench=$mode" --disk "path=$disk,id=bench$pool" > $log 2>&1 < /dev/null
    sed -n 's/^BENCH guest /BENCH dmavm /p' $log
    sed -n 's/^dmavm: stats: bench: dma-pool [^:]*: accesses inside=\([0-9]*\) refused-outside=\([0-9]*\)$/DMAVM pool_bench=\1,\2/p' $log
    grep -E 'dmavm: .*(error|warning)|Kernel panic' $log | head -n 5
  done
done
rm -f $disk $log
