#!/bin/sh
# bench-iommu-blk.sh - guest sequential read of a 256 MiB virtio-pci disk
# (dd, 1 MiB blocks, 3 reads per boot, guest cache dropped before each)
# next to a virtio-iommu, in three modes, with dmavm and with QEMU side by
# side in this L1 (boots alternate):
#   direct  the disk bypasses the IOMMU (dmavm direct-ram-access=on; QEMU
#           virtio-blk-pci without iommu_platform)
#   lazy    the disk is translated, the guest's default lazy invalidation
#   strict  the disk is translated, iommu.strict=1
# Prints "BENCH <vmm> <mode> <MiB/s>" per read, and dmavm's counters as
# "STATS <mode> <line>" so a reader can see translation happened.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-iommu-blk: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
disk=/tmp/bench-disk.img
dd if=/dev/urandom of=$disk bs=1048576 count=256 2>/dev/null
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=ddread"
# prefix VMM: turns the guest's "BENCH guest LABEL V" into "BENCH VMM LABEL V"
prefix() { sed -n -e "s/^BENCH guest /BENCH $1 /p" -e "s/^dmavm: stats: /STATS $2 /p"; }
cmdline() { case $1 in strict) echo "$APPEND dmavm.bench=$1 iommu.strict=1" ;; *) echo "$APPEND dmavm.bench=$1" ;; esac; }
for round in 1 2; do
  for mode in direct lazy strict; do
    dra=off; [ $mode = direct ] && dra=on
    "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --memory 512M \
      --cmdline "$(cmdline $mode)" --iommu transport=pci --stats \
      --disk "path=$disk,transport=pci,direct-ram-access=$dra" 2>&1 < /dev/null | prefix dmavm $mode
    platform=on; [ $mode = direct ] && platform=off
    $QEMU -enable-kvm -M q35 -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
      -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=1 \
      -device virtio-iommu-pci \
      -drive id=d0,file=$disk,format=raw,if=none \
      -device virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=$platform \
      -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" \
      -append "$(cmdline $mode)" 2>&1 < /dev/null | prefix qemu $mode
  done
done
rm -f $disk
