#!/bin/sh
# bench-iommu-blk.sh - guest sequential read of a 256 MiB virtio-pci disk
# (dd, 1 MiB blocks, 3 reads per boot, guest cache dropped before each)
# next to a virtio-iommu, in three modes, with dmavm and with QEMU side by
# side in this L1 (boots alternate):
#   direct  the disk bypasses the IOMMU (dmavm direct-ram-access=on; QEMU
#           virtio-blk-pci without iommu_platform)
#   lazy    the disk is translated, the guest's default lazy invalidation
#   strict  the disk is translated, iommu.strict=1
# With BENCH_IOMMU=vtd the IOMMU is Intel VT-d instead (dmavm --iommu
# type=vtd; QEMU -device intel-iommu, none in direct mode), the guest boots
# with intel_iommu=on, and a fourth mode runs:
#   pt      the disk in the unit's scope, the guest's identity domain
#           (iommu=pt: context entries of the pass-through type)
# Prints "BENCH <vmm> <mode> <MiB/s>" per read, and dmavm's counters as
# "STATS <mode> <line>" so a reader can see translation happened.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images), BENCH_IOMMU (virtio|vtd),
# BENCH_ROUNDS (boots per VMM and mode, 1 to 9, default 2), BENCH_MODES
# (the modes to run, in order, separated by commas; default all of the
# IOMMU's)
: "${DMAVM:?}" "${GUEST:?}"
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-iommu-blk: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
disk=/tmp/bench-disk.img
dd if=/dev/urandom of=$disk bs=1048576 count=256 2>/dev/null
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=ddread"
# prefix VMM: turns the guest's "BENCH guest LABEL V" into "BENCH VMM LABEL V"
IOMMU=${BENCH_IOMMU:-virtio}
prefix() { sed -n -e "s/^BENCH guest /BENCH $1 /p" -e "s/^dmavm: stats: /STATS $2 /p"; }
cmdline() {
  extra=
  [ "$IOMMU" = vtd ] && extra=" intel_iommu=on"
  case $1 in
    strict) extra="$extra iommu.strict=1" ;;
    pt) extra="$extra iommu=pt" ;;
  esac
  echo "$APPEND dmavm.bench=$1$extra"
}
case $IOMMU in
  virtio) modes="direct lazy strict" dmavm_iommu="transport=pci" qemu_iommu="-device virtio-iommu-pci" ;;
  vtd) modes="direct lazy strict pt" dmavm_iommu="type=vtd" qemu_iommu="-device intel-iommu,intremap=off" ;;
  *) echo "bench-iommu-blk: BENCH_IOMMU=$IOMMU: virtio or vtd"; exit 1 ;;
esac
ROUNDS=${BENCH_ROUNDS:-2}
case $ROUNDS in
  [1-9]) ;;
  *) echo "bench-iommu-blk: BENCH_ROUNDS=$ROUNDS: 1 to 9"; exit 1 ;;
esac
if [ -n "${BENCH_MODES:-}" ]; then
  wanted=$(echo "$BENCH_MODES" | tr , ' ')
  for mode in $wanted; do
    case " $modes " in
      *" $mode "*) ;;
      *) echo "bench-iommu-blk: BENCH_MODES: $mode is not one of: $modes"; exit 1 ;;
    esac
  done
  modes=$wanted
fi
for round in $(seq "$ROUNDS"); do
  for mode in $modes; do
    dra=off; [ $mode = direct ] && dra=on
    "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --memory 512M \
      --cmdline "$(cmdline $mode)" --iommu "$dmavm_iommu" --stats \
      --disk "path=$disk,transport=pci,direct-ram-access=$dra" 2>&1 < /dev/null | prefix dmavm $mode
    platform=on iommu_dev=$qemu_iommu
    # QEMU's IOMMUs cover every function: a bypassing disk means no IOMMU.
    if [ $mode = direct ]; then
      platform=off
      [ "$IOMMU" = vtd ] && iommu_dev=
    fi
    $QEMU -enable-kvm -M q35 -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
      -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=1 \
      $iommu_dev \
      -drive id=d0,file=$disk,format=raw,if=none \
      -device virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=$platform \
      -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio.gz" \
      -append "$(cmdline $mode)" 2>&1 < /dev/null | prefix qemu $mode
  done
done
rm -f $disk
