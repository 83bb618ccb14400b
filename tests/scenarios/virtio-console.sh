#!/bin/sh
# virtio-console.sh - a guest with a virtio-pci console on dmavm's stdio: what
# the guest writes to /dev/hvc0 appears on dmavm's stdout, and a line the
# host then writes into dmavm's stdin reaches the guest's /dev/hvc0. The
# host waits for the guest's line first: like a serial line, a console
# drops input nobody has open.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
log=/tmp/hvc.log fifo=/tmp/hvc.in
rm -f $log $fifo
mkfifo $fifo
(
  i=0
  while [ $i -lt 120 ] && ! grep -q hvc-hello-from-guest $log 2>/dev/null; do sleep 1; i=$((i + 1)); done
  printf 'ping-from-host\n'
) > $fifo &
"$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --memory 256M \
  --console transport=pci --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=hvc" < $fifo > $log 2>&1
status=$?
wait
grep -E '^DMAVM |dmavm: ' $log | head -n 20
echo "DMAVM vmm_status=$status"
echo "DMAVM host_saw_guest_line=$(grep -c 'hvc-hello-from-guest' $log)"
rm -f $fifo
