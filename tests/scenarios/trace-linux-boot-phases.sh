#!/bin/sh
# trace-linux-boot-phases.sh - where the time to the guest's init goes,
# dmavm against QEMU microvm, in this L1: from the VMM's exec to the first
# guest entry (L1's kvm_entry tracepoint: the VMM's set-up and kernel
# loading), from there to the guest's clock (its init's uptime subtracted
# from the time of the init line: the kernel's entry code, and a
# decompressor), and the guest's uptime at init. Same kernel, initramfs
# and command line as bench-linux-boot.sh. Prints per boot
# "PHASE vmm variant setup=S before_clock=S guest_uptime=S total=S".
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images), BENCH_RUNS (default 3)
: "${DMAVM:?}" "${GUEST:?}"
RUNS=${BENCH_RUNS:-3}
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "trace-linux-boot-phases: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=boot"
grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug
T=/sys/kernel/debug/tracing
[ -d $T ] || { echo "trace-linux-boot-phases: no tracefs"; exit 1; }
echo 16384 > $T/buffer_size_kb
# The trace's clock and /proc/uptime: both CLOCK_MONOTONIC here.
echo mono > $T/trace_clock
now() { cut -d' ' -f1 /proc/uptime; }

# phases VMM VARIANT CMD...
phases() {
  vmm=$1 variant=$2
  shift 2
  echo > $T/trace
  echo 1 > $T/events/kvm/kvm_entry/enable
  t0=$(now)
  "$@" 2>/dev/null < /dev/null | while IFS= read -r line; do
    case $line in
      *"DMAVM init"*)
        t1=$(now)
        echo 0 > $T/events/kvm/kvm_entry/enable
        up=${line#*uptime=}
        up=${up%% *}
        first=$(grep -m1 'kvm_entry:' $T/trace | sed 's/.* \([0-9][0-9]*\.[0-9]*\): kvm_entry:.*/\1/')
        awk -v vmm="$vmm" -v v="$variant" -v t0="$t0" -v f="$first" -v t1="$t1" -v up="$up" 'BEGIN {
          printf "PHASE %s %s setup=%.2f before_clock=%.2f guest_uptime=%.2f total=%.2f\n",
            vmm, v, f - t0, (t1 - up) - f, up, t1 - t0 }' ;;
    esac
  done
  echo 0 > $T/events/kvm/kvm_entry/enable
}

. "$(dirname "$0")/boot-vmms-lib.sh"
dmavm() { boot_dmavm phases "$@"; }
qemu() { boot_qemu phases "$@"; }

export XDG_CACHE_HOME=/tmp/bench-cache
rm -rf "$XDG_CACHE_HOME"
dmavm vmlinuz-pvh-cold vmlinuz
i=1
while [ $i -le "$RUNS" ]; do
  dmavm vmlinuz-pvh vmlinuz
  dmavm vmlinux vmlinux
  qemu vmlinuz
  qemu vmlinux
  i=$((i + 1))
done
echo "L1 reads the vmlinux ($(wc -c < "$GUEST/vmlinux") bytes): $( { t0=$(now); cat "$GUEST/vmlinux" > /dev/null; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }'; } )"
