#!/bin/sh
# linux-demo.sh - the README's first command on a machine without hardware
# KVM: boot the default guest (bzImage, 2 vCPUs, 512 MiB) and show its
# console output (quiet kernel, then the demo check's summary).
: "${DMAVM:?}" "${GUEST:?}"
"$DMAVM" run --kernel "$GUEST/vmlinuz" --initrd "$GUEST/initramfs.cpio.gz" --cpus 2 --memory 512M \
  --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=demo"
st=$?
echo "dmavm exited with status $st"
exit $st
