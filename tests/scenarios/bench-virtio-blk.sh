#!/bin/sh
# bench-virtio-blk.sh - guest sequential read of a 256 MiB disk (dd, 1 MiB
# blocks, 3 reads per boot, guest cache dropped before each) with dmavm and
# with QEMU (microvm with virtio-mmio; q35 with virtio-blk-pci), side by
# side in this L1; boots alternate. Prints "BENCH <vmm> <transport> <MiB/s>"
# per read.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-virtio-blk: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
disk=/tmp/bench-disk.img
dd if=/dev/urandom of=$disk bs=1048576 count=256 2>/dev/null
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=ddread"
# prefix VMM: turns the guest's "BENCH guest LABEL V" into "BENCH VMM LABEL V"
prefix() { sed -n "s/^BENCH guest /BENCH $1 /p"; }
for round in 1 2; do
  "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --memory 512M \
    --cmdline "$APPEND dmavm.bench=mmio" --disk "path=$disk,transport=mmio" 2>&1 < /dev/null | prefix dmavm
  $QEMU -enable-kvm -M microvm,rtc=on -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
    -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=1 \
    -drive id=d0,file=$disk,format=raw,if=none -device virtio-blk-device,drive=d0 \
    -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" \
    -append "$APPEND dmavm.bench=mmio" 2>&1 < /dev/null | prefix qemu
  "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --memory 512M \
    --cmdline "$APPEND dmavm.bench=pci" --disk "path=$disk,transport=pci" 2>&1 < /dev/null | prefix dmavm
  $QEMU -enable-kvm -M q35 -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
    -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=1 \
    -drive id=d0,file=$disk,format=raw,if=none -device virtio-blk-pci,drive=d0 \
    -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" \
    -append "$APPEND dmavm.bench=pci" 2>&1 < /dev/null | prefix qemu
done
rm -f $disk
