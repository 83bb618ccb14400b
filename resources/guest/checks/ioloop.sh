#!/bin/sh
# ioloop.sh - reads the first virtio disk whole, again and again, the page
# cache dropped before each pass, printing `DMAVM io_pass=N` after each and
# resting half a second (under nested emulation the host's processes share
# one CPU with this guest).
# It never ends by itself: the host stops the VM (the control socket's
# `quit`). A failed read ends it with status 1.
dev=/dev/vda
[ -b $dev ] || { echo "DMAVM error=no_vda"; exit 1; }
n=0
while :; do
  echo 3 > /proc/sys/vm/drop_caches
  dd if=$dev of=/dev/null bs=65536 2>/dev/null || { echo "DMAVM error=read_failed"; exit 1; }
  n=$((n + 1))
  echo "DMAVM io_pass=$n"
  sleep 0.5
done
