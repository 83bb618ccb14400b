#!/bin/sh
# payload-smp.sh - under real KVM, every vCPU of a 2-vCPU VM starts in long
# mode and reads its own local APIC ID (apic-id.bin prints "cpu I apic A" in
# index order; vCPU 0 exits 0 once all have printed).
# env: DMAVM (dmavm binary), PAYLOADS (directory of *.bin payloads)
: "${DMAVM:?}" "${PAYLOADS:?}"
out=$("$DMAVM" run --payload "$PAYLOADS/apic-id.bin" --cpus 2 --memory 64M)
st=$?
printf '%s\n' "$out" | head -n 8
seen=$(printf '%s\n' "$out" | grep -c '^cpu [0-9]* apic [0-9]*$')
echo "DMAVM smp_status=$st cpus_seen=$seen"
expected=$(printf 'cpu 0 apic 0\ncpu 1 apic 1')
[ "$out" = "$expected" ] || { echo "payload-smp: unexpected output"; exit 1; }
[ "$st" -eq 0 ] || { echo "payload-smp: exit status $st, expected 0"; exit 1; }
exit 0
