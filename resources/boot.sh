#!/usr/bin/env bash
# boot.sh - the README's first command: install what dmavm needs, build it,
# fetch and build the default guest (Debian 6.12 cloud kernel + busybox
# initramfs), and boot it.
# - With hardware KVM (kvm_intel or kvm_amd loaded): boots it here, with the
#   guest's console on this terminal; its busybox shell's `poweroff -f` ends
#   the VM.
# - Elsewhere (no KVM, or this project's PVM machines, where a stock kernel
#   cannot boot): boots it in the nested test bed and prints the guest's
#   console lines and a summary; --cpus and --memory reach the guest there
#   too (tests/scenarios/linux-demo.sh, which also checks the size fits L1).
# usage: resources/boot.sh [--cpus N] [--memory SIZE]   (defaults 2, 1G)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cpus=2 memory=1G
while [ $# -gt 0 ]; do
  case $1 in
    --cpus) cpus=${2:?--cpus needs a value}; shift 2 ;;
    --memory) memory=${2:?--memory needs a value}; shift 2 ;;
    *) echo "boot.sh: error: unknown option $1 (use --cpus N, --memory SIZE)" >&2; exit 2 ;;
  esac
done
# Checked here, before minutes of set-up; dmavm checks the limits (host RAM,
# KVM's vCPUs), and in the test bed linux-demo that the size fits L1.
[[ $cpus =~ ^[1-9][0-9]{0,3}$ ]] \
  || { echo "boot.sh: error: --cpus '$cpus' is not a whole number of vCPUs from 1" >&2; exit 2; }
[[ $memory =~ ^[0-9]{1,9}([KkMmGgTt]([Ii]?[Bb])?)?$ ]] \
  || { echo "boot.sh: error: --memory '$memory' is not a size such as 768M or 1G (a bare number is MiB)" >&2; exit 2; }
resources/setup.sh
cargo build --release -q -p dmavm
resources/guest/fetch-kernel.sh
resources/guest/build-initramfs.sh
if { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  echo "boot.sh: booting build/guest/vmlinuz with dmavm ($cpus vCPUs, $memory); poweroff -f in the guest ends it"
  exec target/release/dmavm run --kernel build/guest/vmlinuz --initrd build/guest/initramfs.cpio.gz \
    --cpus "$cpus" --memory "$memory" --cmdline "console=ttyS0 quiet"
fi
echo "boot.sh: no hardware KVM here: booting the guest inside the nested test bed (QEMU TCG + L1 KVM)"
exec cargo run -q --release -p dmavm-tests --bin testbed -- \
  --env "DEMO_CPUS=$cpus" --env "DEMO_MEMORY=$memory" linux-demo
