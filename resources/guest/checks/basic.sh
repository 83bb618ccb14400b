#!/bin/sh
# basic.sh - the guest booted: report CPUs and memory as it sees them, and fail
# if the kernel log holds a warning, BUG, oops or an XSAVE consistency problem.
echo "DMAVM cpus=$(grep -c ^processor /proc/cpuinfo) online=$(cat /sys/devices/system/cpu/online)" \
  "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
pattern='WARNING:|BUG:|Oops|XSAVE consistency problem'
bad=$(dmesg | grep -cE "$pattern")
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 3 -A 2 "$pattern"; exit 1; }
