#!/bin/sh
# bench-linux-boot.sh - boot time to the guest init's first line, dmavm and
# QEMU microvm side by side in this L1, same kernel, initramfs and command
# line: dmavm with the bzImage entered through PVH (its decompressed ELF
# cached by a first, cold boot), through the 64-bit boot protocol
# (DMAVM_BZIMAGE_ENTRY=long64) and the PVH vmlinux; QEMU with the bzImage
# and the vmlinux. Runs alternate between all of them so drifts hit all
# alike. Prints "BENCH vmm variant seconds" per run (L1 uptime clock, 10 ms
# resolution) and, at the guest's first line while the VM still runs,
# "KVMSTAT vmm variant name=value..." from L1's KVM statistics (exits,
# faults, and how guest memory is mapped: pages_4k/pages_2m) and
# "GUESTUP vmm variant seconds", the guest's own uptime at that line (its
# clock starts early in the kernel: the rest of the boot time is the VMM,
# loading and what runs before the kernel's clock, such as a decompressor).
# resources/bench/linux-boot.py takes medians.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images), BENCH_RUNS (default 10)
: "${DMAVM:?}" "${GUEST:?}"
RUNS=${BENCH_RUNS:-10}
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-linux-boot: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=boot"
STATS="exits pf_fixed pf_taken pf_guest io_exits mmio_exits halt_exits insn_emulation tlb_flush pages_4k pages_2m"
now() { cut -d' ' -f1 /proc/uptime; }
grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"

kvm_stats() {
  out=
  for s in $STATS; do
    [ -r "/sys/kernel/debug/kvm/$s" ] && out="$out $s=$(cat "/sys/kernel/debug/kvm/$s")"
  done
  echo "$out"
}

# measure VMM VARIANT CMD... : time from exec to the "DMAVM init" line
measure() {
  vmm=$1 variant=$2
  shift 2
  t0=$(now)
  "$@" 2>/dev/null < /dev/null | while IFS= read -r line; do
    case $line in
      *"DMAVM init"*)
        t1=$(now)
        echo "BENCH $vmm $variant $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
        echo "KVMSTAT $vmm $variant$(kvm_stats)"
        up=${line#*uptime=}
        echo "GUESTUP $vmm $variant ${up%% *}" ;;
    esac
  done
}

. "$(dirname "$0")/boot-vmms-lib.sh"
dmavm() { boot_dmavm measure "$@"; }
qemu() { boot_qemu measure "$@"; }

# The first boot of the bzImage decompresses it (into the cache).
export XDG_CACHE_HOME=/tmp/bench-cache
rm -rf "$XDG_CACHE_HOME"
dmavm vmlinuz-pvh-cold vmlinuz
i=1
while [ $i -le "$RUNS" ]; do
  dmavm vmlinuz-pvh vmlinuz
  (export DMAVM_BZIMAGE_ENTRY=long64; dmavm vmlinuz-long64 vmlinuz)
  dmavm vmlinux vmlinux
  qemu vmlinuz
  qemu vmlinux
  i=$((i + 1))
done
