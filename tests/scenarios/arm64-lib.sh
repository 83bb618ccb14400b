#!/bin/sh
# arm64-lib.sh - sourced by the arm64-* scenarios (running it alone does
# nothing); the arm64 twin of linux-lib.sh. arm64_boot CPUS MEMORY CHECK
# [DMAVM OPTIONS...] boots $KERNEL, default $GUEST/Image (Debian's arm64
# cloud kernel; $GUEST/pool/Image is the one that bounces through restricted
# DMA pools, carried when the scenario is listed in tests/src/arm64.rs), with
# the test initramfs and dmavm.check=CHECK on the 16550A console (ttyS0),
# prints the guest's DMAVM lines, dmavm's own error lines,
# `DMAVM vmm_status=N` and `DMAVM vmm_ms=T` (dmavm's wall-clock run time,
# from L1), and leaves N in $status. Extra guest command-line words come in
# $EXTRA_CMDLINE.
# env: DMAVM (the aarch64 dmavm), GUEST (Image, initramfs.cpio.gz), KERNEL
arm64_boot() {
  cpus=$1 memory=$2 check=$3
  shift 3
  log=/tmp/arm64-boot-$$.log
  read -r t0 _ < /proc/uptime
  "$DMAVM" run --kernel "${KERNEL:-$GUEST/Image}" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check ${EXTRA_CMDLINE:-}" "$@" \
    > "$log" 2>&1
  status=$?
  read -r t1 _ < /proc/uptime
  grep -E '^DMAVM |dmavm: |WARNING:|BUG:|Oops|Kernel panic|Unable to handle' "$log" | head -n 60
  echo "DMAVM vmm_status=$status vmm_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')"
}

# the disks' host side and the IOMMU counters, shared with linux-lib.sh
. "$(dirname "$0")/disks-lib.sh"
