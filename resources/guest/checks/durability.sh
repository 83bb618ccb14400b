#!/bin/sh
# durability.sh - write a known pattern over the first MiB of the disk whose
# serial is `durable` and fsync it (the guest's block layer sends the writes,
# then VIRTIO_BLK_T_FLUSH), print `DMAVM flushed=1`, then wait without
# syncing or powering off: the host kills dmavm with SIGKILL on that line
# and checks the file, so only what the guest flushed before it can count.
# Also prints the disk's cache mode as the guest sees it (`write_back` when
# VIRTIO_BLK_F_FLUSH was negotiated) and how many flushes it completed.
name=
for blk in /sys/block/vd*; do
  [ -e "$blk" ] || continue
  [ "$(cat "$blk/serial" 2>/dev/null)" = durable ] && name=$(basename "$blk")
done
[ -n "$name" ] || { echo "DMAVM error=no_durable_disk"; exit 1; }
echo "DMAVM write_cache=$(tr ' ' _ < "/sys/block/$name/queue/write_cache")"
if yes dmavm-durable | head -c 1048576 | dd of="/dev/$name" bs=65536 conv=fsync 2>/dev/null; then
  # field 16 of the block stat file: flush requests completed
  echo "DMAVM flush_requests=$(awk '{print $16}' "/sys/block/$name/stat")"
  echo "DMAVM flushed=1"
else
  echo "DMAVM flushed=0"
  exit 1
fi
while :; do sleep 1; done
