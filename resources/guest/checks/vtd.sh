#!/bin/sh
# vtd.sh - the virtio check (virtio.sh) on a machine whose PCI devices are
# translated by emulated Intel VT-d units, with what the guest's
# intel-iommu driver made of them. Prints, after virtio.sh's lines:
#   dmar_units=N   units the driver registered (/sys/class/iommu/dmar*)
#   clflush=N      calls of clflush_cache_range() while virtio.sh ran: the
#       driver flushes each page-table update from the CPU caches when the
#       unit's page walks are not coherent (ECAP.C = 0), and not otherwise
#   dmar_bad=N     kernel log lines of DMAR faults and invalidation errors
#   dmar_structures=S;S...  the remapping structures of the DMAR table as
#       the guest's firmware interface gives it (/sys/firmware/acpi/tables/
#       DMAR; VT-d 4.1 chapter 8), in table order: a DRHD as its segment
#       and device scope, SSSS[bb:dd.f,...] (PCI endpoints, the first entry
#       of each path) or SSSS[all] (INCLUDE_PCI_ALL); any other structure
#       as typeN; none without a DMAR
# then powers off. Uses a tracefs kprobe (CONFIG_KPROBE_EVENTS).
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
T=/sys/kernel/tracing
echo 'p:clflush clflush_cache_range' > $T/kprobe_events || { echo "DMAVM error=kprobe"; exit 1; }
echo 1 > $T/events/kprobes/enable
VIRTIO_CHECK_NO_POWEROFF=1 sh /checks/virtio.sh
st=$?
echo 0 > $T/events/kprobes/enable
echo "DMAVM clflush=$(awk '$1 == "clflush" {print $2}' $T/kprobe_profile)"
echo "DMAVM dmar_units=$(ls -d /sys/class/iommu/dmar* 2>/dev/null | wc -l)"
structures=$(sh /checks/dmar-structures.sh)
echo "DMAVM dmar_structures=$structures"
bad=$(dmesg | grep -cE 'DMAR.*([Ff]ault|[Ee]rror)|DMAR.*Invalidation (Queue|Time-out|Completion)')
echo "DMAVM dmar_bad=$bad"
[ "$bad" -eq 0 ] || dmesg | grep -E -m 5 'DMAR.*([Ff]ault|[Ee]rror)|DMAR.*Invalidation'
[ "$st" -eq 0 ] && [ "$bad" -eq 0 ] || exit 1
poweroff -f
