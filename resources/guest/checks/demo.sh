#!/bin/sh
# demo.sh - what the README's first command shows under the test bed: a
# short summary of the machine as the guest sees it.
echo "dmavm guest: $(uname -sr) up $(cut -d' ' -f1 /proc/uptime) s," \
  "$(grep -c ^processor /proc/cpuinfo) CPU(s), $(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "dmavm guest: ACPI tables: $(ls /sys/firmware/acpi/tables | tr '\n' ' ')"
echo "dmavm guest: console $(cat /sys/class/tty/console/active), cmdline: $(cat /proc/cmdline)"
