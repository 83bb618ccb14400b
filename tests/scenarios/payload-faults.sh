#!/bin/sh
# payload-faults.sh - under real KVM: a triple fault ends dmavm with status 1
# and one error line; an MMIO access where no device sits is reported and the
# guest continues (the read floats to all ones).
# env: DMAVM (dmavm binary), PAYLOADS (directory of *.bin payloads)
: "${DMAVM:?}" "${PAYLOADS:?}"
fail=0
err=$("$DMAVM" run --payload "$PAYLOADS/triple-fault.bin" --memory 64M 2>&1 >/dev/null)
st=$?
echo "$err" | head -n 3
tf=0; case $err in *"triple-faulted"*) tf=1 ;; esac
echo "DMAVM triple_fault_status=$st triple_fault_reported=$tf"
[ "$st" -eq 1 ] && [ $tf = 1 ] || { echo "payload-faults: triple fault not reported as expected"; fail=1; }

out=$("$DMAVM" run --payload "$PAYLOADS/mmio-unmapped.bin" --memory 64M 2>/tmp/mmio.err)
st=$?
head -n 3 /tmp/mmio.err
warned=0; grep -q 'unhandled MMIO write of 4 bytes at 0xd0000000' /tmp/mmio.err && warned=1
echo "DMAVM mmio_status=$st mmio_warned=$warned"
[ "$st" -eq 0 ] && [ $warned = 1 ] && [ "$out" = "mmio survived value=ffffffff" ] \
  || { echo "payload-faults: unmapped MMIO not handled as expected: $out"; fail=1; }
exit $fail
