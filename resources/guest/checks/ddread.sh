#!/bin/sh
# ddread.sh - sequential read of the whole first virtio disk (dd, 1 MiB
# blocks) three times, the guest page cache dropped before each, printing
# "BENCH guest <transport label> <MiB/s>" for the benchmark scripts. The
# label comes from the kernel command line (dmavm.bench=LABEL).
label=disk
for w in $(cat /proc/cmdline); do case $w in dmavm.bench=*) label=${w#dmavm.bench=} ;; esac; done
dev=/dev/vda
[ -b $dev ] || { echo "DMAVM error=no_vda"; exit 1; }
bytes=$(($(cat /sys/block/vda/size) * 512))
now() { cut -d' ' -f1 /proc/uptime; }
for i in 1 2 3; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(now)
  dd if=$dev of=/dev/null bs=1048576 2>/dev/null || exit 1
  t1=$(now)
  echo "BENCH guest $label $(awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { printf "%.1f", b / 1048576 / (c - a) }')"
done
