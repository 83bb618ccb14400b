#!/bin/sh
# linux-lib.sh - sourced by the linux-* scenarios (running it alone does
# nothing). boot_guest KERNEL CPUS MEMORY CHECK [CMDLINE...] boots
# $GUEST/KERNEL (vmlinuz = bzImage, vmlinux = PVH ELF) with the test
# initramfs and dmavm.check=CHECK, prints the guest's DMAVM lines, dmavm's
# own error lines and `DMAVM vmm_status=N`, and leaves N in $status.
# env: DMAVM (dmavm binary), GUEST (guest images)
boot_guest() {
  kernel=$1 cpus=$2 memory=$3 check=$4
  shift 4
  log=/tmp/boot-$$.log
  "$DMAVM" run --kernel "$GUEST/$kernel" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check $*" > "$log" 2>&1
  status=$?
  report
}

# boot_guest_with KERNEL CPUS MEMORY CHECK [DMAVM OPTIONS...]: the same with
# extra dmavm options (devices) instead of extra command-line words.
boot_guest_with() {
  kernel=$1 cpus=$2 memory=$3 check=$4
  shift 4
  log=/tmp/boot-$$.log
  "$DMAVM" run --kernel "$GUEST/$kernel" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check" "$@" > "$log" 2>&1
  status=$?
  report
}

report() {
  grep -E '^DMAVM |dmavm: |WARNING:|BUG:|Oops|Kernel panic' "$log" | head -n 40
  echo "DMAVM vmm_status=$status"
}
