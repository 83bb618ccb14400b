#!/bin/sh
# trace-linux-boot-pio.sh - which I/O ports the guest touches on its way
# to init, dmavm against QEMU microvm, in this L1: L1's kvm_pio tracepoint
# during one boot each of the PVH vmlinux, then "PIO vmm count direction
# port" per port (most first).
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
QEMU=/usr/bin/qemu-system-x86_64
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=boot"
grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug
T=/sys/kernel/debug/tracing
[ -d $T ] || { echo "trace-linux-boot-pio: no tracefs"; exit 1; }
echo 16384 > $T/buffer_size_kb

traced() {
  vmm=$1
  shift
  echo > $T/trace
  echo 1 > $T/events/kvm/kvm_pio/enable
  "$@" 2>/dev/null < /dev/null | while IFS= read -r line; do
    case $line in *"DMAVM init"*) echo 0 > $T/events/kvm/kvm_pio/enable ;; esac
  done
  echo 0 > $T/events/kvm/kvm_pio/enable
  # "pio_write at 0x3f8 size 1 count 1 val 0x41"
  sed -n 's/.*kvm_pio: pio_\([a-z]*\) at \(0x[0-9a-f]*\).*/\1 \2/p' $T/trace | sort | uniq -c | sort -rn | head -12 |
    while read -r n dir port; do echo "PIO $vmm $n $dir $port"; done
  echo "PIO $vmm total $(grep -c kvm_pio: $T/trace)"
}

traced dmavm "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" \
  --cpus 1 --memory 256M --cmdline "$APPEND"
traced qemu $QEMU -enable-kvm -M microvm,rtc=on -cpu host -m 256M -smp 1 \
  -nodefaults -no-user-config -display none -serial stdio -no-reboot \
  -device isa-debug-exit,iobase=0xf4,iosize=1 \
  -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" -append "$APPEND"
