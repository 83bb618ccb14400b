#!/bin/sh
# bench-net.sh - guest-to-host and host-to-guest TCP throughput of a
# virtio-net-pci device next to a virtio-iommu, in three modes, with dmavm
# and with QEMU (user-space virtio-net, vhost=off) side by side in this L1,
# boots alternating, on the same TAP in a network namespace of its own:
#   direct  the device bypasses the IOMMU (dmavm direct-ram-access=on;
#           QEMU without iommu_platform)
#   lazy    translated, the guest's lazy invalidation (iommu.strict=0)
#   strict  translated, iommu.strict=1
# The guest runs the net check (an HTTP download of BENCH_MIB MiB, then the
# same file sent back over a TCP stream, each checksummed); prints "BENCH
# <vmm> <mode> down|up <MiB/s> ok|bad" per boot (up: ok when the host got
# the file whole) and dmavm's --stats as "STATS <mode> ...".
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1 (no option ROM: romfile=
# empty, the L2 boots with -kernel).
# env: DMAVM (dmavm binary), GUEST (guest images), BENCH_MIB (default 64),
# BENCH_ROUNDS (default 2), BENCH_MODES (default "direct lazy strict")
# l1-cpus: 2 (L1 answers the guest's traffic beside running it: see tests/src/sandbox.rs)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-net: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
[ -c /dev/net/tun ] || insmod /lib/modules/tun.ko || exit 1
d=/tmp/net
rm -rf $d; mkdir -p $d/www
mib=${BENCH_MIB:-64}
dd if=/dev/urandom of=$d/www/data bs=1048576 count="$mib" 2>/dev/null
sha=$(sha256sum $d/www/data | cut -d' ' -f1)
ip link set lo up
tunctl -t tap0 > /dev/null || exit 1
ip addr add 169.254.10.1/24 dev tap0
ip link set tap0 up
httpd -f -p 169.254.10.1:8080 -h $d/www &
server=$!
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=net"
cmdline() { case $1 in strict) echo "$APPEND iommu.strict=1" ;; lazy) echo "$APPEND iommu.strict=0" ;; *) echo "$APPEND" ;; esac; }
# run_bench VMM MODE COMMAND...: runs one boot with a fresh receiver for
# the upload; prints the guest's timings as BENCH lines, dmavm's stats as
# STATS
run_bench() {
  vmm=$1 mode=$2
  shift 2
  rm -f $d/hold; mkfifo $d/hold
  nc -l -p 9000 < $d/hold > $d/up &
  receiver=$!
  exec 3> $d/hold
  "$@" 2>&1 < /dev/null > $d/log
  exec 3>&-
  kill $receiver 2>/dev/null
  up_ok=bad; [ "$(sha256sum < $d/up | cut -d' ' -f1)" = "$sha" ] && up_ok=ok
  out=$(awk -v vmm="$vmm" -v mode="$mode" -v sha="$sha" -v mib="$mib" -v up_ok="$up_ok" '
    /^DMAVM down_sha=/ { split($0, f, /[ =]/); ok = (f[3] == sha) ? "ok" : "bad"; s = f[7] + 0;
                         printf "BENCH %s %s down %.2f %s\n", vmm, mode, (s > 0 ? mib / s : 0), ok }
    /^DMAVM up_secs=/ { split($0, f, /[ =]/); s = f[3] + 0;
                        printf "BENCH %s %s up %.2f %s\n", vmm, mode, (s > 0 ? mib / s : 0), up_ok }
    /^dmavm: stats: / { sub(/^dmavm: stats: /, ""); print "STATS " mode " " $0 }' $d/log)
  echo "$out"
  # A boot that did not time both transfers (the guest crashed, the VMM
  # failed) fails the benchmark, with the VMM's last lines.
  if [ "$(echo "$out" | grep -c '^BENCH ')" -ne 2 ]; then
    echo "bench-net: $vmm $mode did not time both transfers; its last lines:"
    tail -5 $d/log
    failed=1
  fi
}
failed=
for round in $(seq "${BENCH_ROUNDS:-2}"); do
  for mode in ${BENCH_MODES:-direct lazy strict}; do
    dra=off; [ $mode = direct ] && dra=on
    run_bench dmavm $mode "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" \
      --memory 512M --cmdline "$(cmdline $mode)" --iommu transport=pci --stats \
      --net "tap=tap0,transport=pci,direct-ram-access=$dra"
    platform=on; [ $mode = direct ] && platform=off
    run_bench qemu $mode $QEMU -enable-kvm -M q35 -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
      -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=1 \
      -device virtio-iommu-pci \
      -netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off \
      -device virtio-net-pci,netdev=n0,mac=e6:3f:28:ba:a0:31,disable-legacy=on,iommu_platform=$platform,romfile= \
      -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" \
      -append "$(cmdline $mode)"
  done
done
kill $server 2>/dev/null
rm -rf $d
[ -z "$failed" ]
