#!/bin/sh
# payload-hello.sh - dmavm runs the flat-binary payload hello.bin: it must
# print "hello from dmavm" on the serial port and end through the exit device
# with status 7, which dmavm returns as its own exit status.
# env: DMAVM (dmavm binary), PAYLOADS (directory of *.bin payloads)
: "${DMAVM:?}" "${PAYLOADS:?}"
out=$("$DMAVM" run --payload "$PAYLOADS/hello.bin" --memory 64M)
st=$?
printf '%s\n' "$out" | head -n 20
echo "DMAVM payload_status=$st"
case $out in
  *"hello from dmavm"*) ;;
  *) echo "payload-hello: stdout lacks 'hello from dmavm'"; exit 1 ;;
esac
[ "$st" -eq 7 ] || { echo "payload-hello: exit status $st, expected 7"; exit 1; }
exit 0
