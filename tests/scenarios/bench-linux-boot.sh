#!/bin/sh
# bench-linux-boot.sh - boot time to the guest init's first line, dmavm and
# QEMU microvm side by side in this L1, same kernel, initramfs and command
# line, both kernel formats; runs alternate between the two VMMs so drifts
# hit both alike. Prints "BENCH vmm format seconds" per run (L1 uptime
# clock, 10 ms resolution); resources/bench/linux-boot.sh takes medians.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
RUNS=5
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-linux-boot: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=boot"
now() { cut -d' ' -f1 /proc/uptime; }

# measure VMM FORMAT CMD... : time from exec to the "DMAVM init" line
measure() {
  vmm=$1 format=$2
  shift 2
  t0=$(now)
  "$@" 2>/dev/null < /dev/null | while IFS= read -r line; do
    case $line in
      *"DMAVM init"*) echo "BENCH $vmm $format $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')" ;;
    esac
  done
}

i=1
while [ $i -le $RUNS ]; do
  for format in vmlinuz vmlinux; do
    measure dmavm $format "$DMAVM" run --kernel "$GUEST/$format" --initrd "$GUEST/initramfs.cpio.gz" \
      --cpus 1 --memory 256M --cmdline "$APPEND"
    measure qemu $format $QEMU -enable-kvm -M microvm,rtc=on -cpu host -m 256M -smp 1 \
      -nodefaults -no-user-config -display none -serial stdio -no-reboot \
      -device isa-debug-exit,iobase=0xf4,iosize=1 \
      -kernel "$GUEST/$format" -initrd "$GUEST/initramfs.cpio.gz" -append "$APPEND"
  done
  i=$((i + 1))
done
