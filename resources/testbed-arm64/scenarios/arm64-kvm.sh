#!/bin/sh
# arm64-kvm.sh - the arm64 sandbox has working KVM: /dev/kvm exists, KVM runs
# in VHE mode, and kvm-probe (a tiny aarch64 VMM, resources/testbed-arm64/
# kvm-probe.c) runs a guest to an MMIO exit and a PSCI SYSTEM_OFF, timing N
# MMIO exit round trips. Also says whether the aarch64 dmavm and the L2 images
# are in place (informational).
# env: DMAVM (dmavm binary), GUEST (Image, initramfs.cpio.gz)
# Runs in the arm64 L1 only.
: "${DMAVM:?}" "${GUEST:?}"
kvm=0; [ -c /dev/kvm ] && kvm=1
msg=$(dmesg | grep -E 'kvm \[[0-9]+\]: .*mode initialized' | tail -1)
case $msg in
  *"nVHE mode initialized"*) mode=nvhe ;;
  *"VHE mode initialized"*) mode=vhe ;;
  *) mode=none ;;
esac
el2=0; dmesg | grep -q 'CPU: All CPU(s) started at EL2' && el2=1
bin=0; [ -x "$DMAVM" ] && bin=1
images=1
for f in Image initramfs.cpio.gz; do [ -s "$GUEST/$f" ] || images=0; done
echo "DMAVM kvm=$kvm kvm_mode=$mode el2=$el2 dmavm=$bin guest=$images kernel=$(uname -r)"
[ -n "$msg" ] && echo "arm64-kvm: ${msg#*] }"
[ $kvm = 1 ] || { echo "arm64-kvm: no /dev/kvm"; exit 1; }
kvm-probe "${KVM_PROBE_EXITS:-200}"
