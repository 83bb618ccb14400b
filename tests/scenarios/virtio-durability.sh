#!/bin/sh
# virtio-durability.sh - what a guest has flushed survives `kill -9` of
# dmavm: the durability check writes a pattern over the first MiB of a
# scratch disk, fsyncs it (FLUSH) and prints `DMAVM flushed=1`; on that line
# this script kills dmavm with SIGKILL, so none of dmavm's exit paths runs,
# and compares the file with the pattern (`DMAVM host_flushed_match=1`).
# dmavm's status is that of a process killed by SIGKILL: `DMAVM vmm_status=137`.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/virtio-durability
rm -rf $d; mkdir -p $d
dd if=/dev/zero of=$d/durable.img bs=1048576 count=2 2>/dev/null
log=/tmp/boot-$$.log
"$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --cpus 1 --memory 256M \
  --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=durability" \
  --disk "path=$d/durable.img,id=durable" > "$log" 2>&1 &
pid=$!
# dmavm's stdout is the guest's console, line-buffered: poll it for the
# line, for at most 100 s (below the test bed's 120 s per scenario).
deadline=$(($(date +%s) + 100))
while ! grep -q '^DMAVM flushed=' "$log" && kill -0 $pid 2>/dev/null && [ "$(date +%s)" -lt $deadline ]; do
  usleep 100000
done
seen=$(grep -c '^DMAVM flushed=1' "$log")
kill -KILL $pid 2>/dev/null
wait $pid
status=$?
report
echo "DMAVM host_saw_flushed=$seen"
expected=$(yes dmavm-durable | head -c 1048576 | sha256sum | cut -d' ' -f1)
got=$(head -c 1048576 $d/durable.img | sha256sum | cut -d' ' -f1)
echo "DMAVM host_flushed_match=$([ "$expected" = "$got" ] && echo 1 || echo 0)"
rm -rf $d
