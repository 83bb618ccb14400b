#!/bin/sh
# basic.sh - the guest booted: report CPUs and memory as it sees them, and fail
# if the kernel log holds a warning, BUG or oops.
echo "DMAVM cpus=$(grep -c ^processor /proc/cpuinfo) mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops')
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 3 -A 2 'WARNING:|BUG:|Oops'; exit 1; }
