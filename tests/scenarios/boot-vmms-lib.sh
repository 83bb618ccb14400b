#!/bin/sh
# boot-vmms-lib.sh - sourced by the boot benchmark scenarios (running it
# alone does nothing): the same guest booted by dmavm and by QEMU microvm,
# each through a measuring function the scenario names.
#   boot_dmavm MEASURE VARIANT KERNEL   dmavm with $GUEST/KERNEL
#   boot_qemu MEASURE FORMAT            QEMU microvm with $GUEST/FORMAT
# MEASURE is called as `MEASURE VMM VARIANT COMMAND...`.
# env: DMAVM, GUEST, QEMU, APPEND (the guest's command line)
boot_dmavm() {
  measure=$1 variant=$2 kernel=$3
  $measure dmavm "$variant" "$DMAVM" run --kernel "$GUEST/$kernel" --initrd "$GUEST/initramfs.cpio.gz" \
    --cpus 1 --memory 256M --cmdline "$APPEND"
}

boot_qemu() {
  measure=$1 format=$2
  $measure qemu "$format" $QEMU -enable-kvm -M microvm,rtc=on -cpu host -m 256M -smp 1 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=1 \
    -kernel "$GUEST/$format" -initrd "$GUEST/initramfs.cpio.gz" -append "$APPEND"
}
