#!/bin/sh
# testbed-selftest.sh - the test bed itself works: /dev/kvm is there, and the
# dmavm binary and the guest images the scenarios use are in place.
# env: DMAVM (dmavm binary), PAYLOADS (payload directory), GUEST (guest images)
: "${DMAVM:?}" "${PAYLOADS:?}" "${GUEST:?}"
fail=0
kvm=0; [ -c /dev/kvm ] && kvm=1
bin=0; [ -x "$DMAVM" ] && bin=1
images=1
for f in vmlinuz vmlinux initramfs.cpio.gz; do [ -s "$GUEST/$f" ] || images=0; done
nbin=0
for f in "$PAYLOADS"/*.bin; do [ -f "$f" ] && nbin=$((nbin + 1)); done
echo "DMAVM ok=1 kvm=$kvm dmavm=$bin guest=$images payloads=$nbin"
[ $kvm = 1 ] || { echo "testbed-selftest: no /dev/kvm"; fail=1; }
[ $bin = 1 ] || { echo "testbed-selftest: $DMAVM is not executable"; fail=1; }
[ $images = 1 ] || { echo "testbed-selftest: guest images missing in $GUEST"; fail=1; }
exit $fail
