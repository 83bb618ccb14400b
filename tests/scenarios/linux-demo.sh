#!/bin/sh
# linux-demo.sh - the README's first command on a machine without hardware
# KVM: boot the default guest (bzImage, DEMO_CPUS vCPUs, DEMO_MEMORY of RAM;
# resources/boot.sh passes its --cpus and --memory as these, defaults 2 and
# 1G) and show its console output (quiet kernel, then the demo check's
# summary).
: "${DMAVM:?}" "${GUEST:?}"
cpus=${DEMO_CPUS:-2} memory=${DEMO_MEMORY:-1G}
die() { echo "linux-demo: error: $*"; exit 2; }
case $cpus in
  ''|*[!0-9]*|0*) die "--cpus '$cpus' is not a whole number of vCPUs from 1" ;;
esac
# dmavm checks the size's syntax and that it is at most this machine's RAM;
# here it also has to fit what L1 has left, or the guest would be killed or
# stall when it touches its memory: a bare number is MiB, as for dmavm.
digits=${memory%%[!0-9]*}
unit=$(echo "${memory#"$digits"}" | tr a-z A-Z)
[ -n "$digits" ] && [ ${#digits} -le 9 ] || die "--memory '$memory' is not a size such as 768M or 1G"
digits=$((10#$digits))
case $unit in
  K|KB|KIB) mib=$((digits / 1024)) ;;
  ''|M|MB|MIB) mib=$digits ;;
  G|GB|GIB) mib=$((digits * 1024)) ;;
  T|TB|TIB) mib=$((digits * 1024 * 1024)) ;;
  *) die "--memory '$memory' is not a size such as 768M or 1G" ;;
esac
# what dmavm itself and the KVM structures of the guest need besides its RAM
overhead=64
avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ $((mib + overhead)) -gt "$avail" ]; then
  die "--memory $memory does not fit: this machine (the test bed's L1 when there is no hardware KVM) has $avail MiB available, and the guest needs its size plus about $overhead MiB"
fi
echo "linux-demo: booting the guest with $cpus vCPU(s) and $memory"
"$DMAVM" run --kernel "$GUEST/vmlinuz" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" --memory "$memory" \
  --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=demo"
st=$?
echo "dmavm exited with status $st"
exit $st
