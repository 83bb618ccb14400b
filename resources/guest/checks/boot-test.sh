#!/bin/sh
# boot-test.sh - the check `dmavm boot-test` runs in every guest: report what
# the guest sees and run a DMA workload on every device, as DMAVM lines the
# harness compares with what the machine model says the guest should see.
# It judges nothing itself (the harness does) and exits 0 unless it broke.
#   bt_drivers=D,D...     the drivers the kernel has, built in or loaded: those
#       of the virtio bus, and virtio-pci and virtio-mmio (- for none)
#   bt_virtio=virtioN device=ID parent=P addr=A group=G driver=D features=F
#       every virtio device: its parent (PCI function or LNRO0005:NN), the
#       parent's MMIO base from /proc/iomem (virtio-mmio), its iommu group
#       (none: no group), its driver and negotiated feature bits (bit 0 first)
#   bt_disk=SERIAL dev=vdX ro=R sha=S readback=S|- write_refused=0|1|-
#       every disk: SHA-256 of all of it; writable: a pattern written over its
#       first MiB with O_DIRECT, read back with O_DIRECT; read-only: whether a
#       write was refused
#   bt_rng=NAME bytes=N   64 KiB read from every virtio hwrng
#   bt_hvc=hvcN           every virtio console; writes "DMAVM-HVC hvcN" to it
#   bt_coherency=SERIAL sync_for_device=N sync_for_cpu=M prot=P
#       arm64 only, every disk: its driver unbound and bound again (which
#       re-makes its rings, coherent allocations) and 1 MiB read with
#       O_DIRECT, while kprobes count arch_sync_dma_for_device() and
#       arch_sync_dma_for_cpu() (the cache maintenance arm64 does only for a
#       non-coherent device) and a kretprobe records the memory type
#       dma_pgprot() gave its coherent allocations: normal (cacheable),
#       normal-nc (non-cacheable: a non-coherent device), none (no remap:
#       dma-direct memory of a coherent device); bt_coherency_error=WHY when
#       the probes cannot be set
#   bt_dmar_units=N structures=S;S...  the Intel VT-d units the kernel
#       registered (/sys/class/iommu/dmar*) and the remapping structures of
#       the DMAR table as the guest read it (/sys/firmware/acpi/tables/DMAR;
#       VT-d 4.1 chapter 8): a DRHD as its segment and device scope,
#       SSSS[bb:dd.f,...] (PCI endpoints, the first entry of each path) or
#       SSSS[all] (INCLUDE_PCI_ALL); any other structure as typeN; none
#       without a DMAR (the format of checks/vtd.sh's dmar_structures)
#   bt_net=MAC host=H iface=IF|none, net-exchange.sh's lines, then
#   bt_net_end=MAC status=N   for every MAC of `dmavm.bt_net=MAC,...` on the
#       kernel command line, in order: the interface with that address takes
#       169.254.(10+i).2/24 (i from 0) and exchanges a block with the
#       harness's peer at 169.254.(10+i).1 (a ping, the block down over HTTP
#       and back up over TCP); status is net-exchange.sh's
#   DMAVM-KLOG LINE / bt_klog_bad=N   kernel log lines matching
#       /etc/boot-test/patterns (grep -E, one pattern a line; the harness adds
#       the file to the initramfs), the first 20 of N
#   bt_done=1             the check got to its end
drivers=
for d in /sys/bus/virtio/drivers/* /sys/bus/pci/drivers/virtio-pci /sys/bus/platform/drivers/virtio-mmio; do
  [ -e "$d" ] && drivers="$drivers${drivers:+,}$(basename "$d")"
done
echo "DMAVM bt_drivers=${drivers:--}"

for dev in /sys/bus/virtio/devices/virtio*; do
  [ -e "$dev" ] || continue
  parent_dir=$(dirname "$(readlink -f "$dev")")
  parent=$(basename "$parent_dir")
  group=none
  [ -e "$parent_dir/iommu_group" ] && group=$(basename "$(readlink "$parent_dir/iommu_group")")
  driver=none
  [ -e "$dev/driver" ] && driver=$(basename "$(readlink "$dev/driver")")
  addr=$(grep -m 1 " : $parent\$" /proc/iomem | sed 's/^ *\([0-9a-f]*\)-.*/\1/')
  # a device-tree device is named after its base and node: a000000.virtio,
  # a000000.iommu (a PCI function's name has colons)
  if [ -z "$addr" ] && echo "$parent" | grep -qE '^[0-9a-f]+\.[a-z_-]+$'; then
    addr=${parent%%.*}
  fi
  echo "DMAVM bt_virtio=$(basename "$dev") device=$(cat "$dev/device") parent=$parent" \
    "addr=${addr:--} group=$group driver=$driver features=$(cat "$dev/features" 2>/dev/null || echo -)"
done

yes dmavm-boot-test | head -c 1048576 > /tmp/pattern
for blk in /sys/block/vd*; do
  [ -e "$blk" ] || continue
  name=$(basename "$blk"); serial=$(cat "$blk/serial" 2>/dev/null); ro=$(cat "$blk/ro")
  sha=$(sha256sum "/dev/$name" | cut -d' ' -f1)
  readback=- refused=-
  if [ "$ro" = 1 ]; then
    if dd if=/tmp/pattern of="/dev/$name" bs=4096 count=1 oflag=direct 2>/dev/null; then
      refused=0
    else
      refused=1
    fi
  elif dd if=/tmp/pattern of="/dev/$name" bs=65536 oflag=direct 2>/dev/null; then
    readback=$(dd if="/dev/$name" bs=65536 count=16 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
  fi
  echo "DMAVM bt_disk=${serial:--} dev=$name ro=$ro sha=${sha:--} readback=$readback write_refused=$refused"
done
rm -f /tmp/pattern

hw=/sys/class/misc/hw_random
if [ -e $hw/rng_available ]; then
  for rng in $(cat $hw/rng_available); do
    case $rng in virtio_rng.*) ;; *) continue ;; esac
    echo "$rng" > $hw/rng_current 2>/dev/null
    echo "DMAVM bt_rng=$rng bytes=$(dd if=/dev/hwrng bs=4096 count=16 2>/dev/null | wc -c)"
  done
fi

for tty in /sys/class/tty/hvc*; do
  [ -e "$tty" ] || continue
  name=$(basename "$tty")
  # only the virtio consoles (the driver is virtio_console)
  [ -c "/dev/$name" ] && echo "DMAVM-HVC $name" > "/dev/$name" 2>/dev/null && echo "DMAVM bt_hvc=$name"
done

if [ "$(uname -m)" = aarch64 ]; then
  mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
  T=/sys/kernel/tracing
  hits() { awk -v e="$1" '$1 == e { print $2 }' $T/kprobe_profile; }
  if echo 'p:bt_sync_dev arch_sync_dma_for_device' > $T/kprobe_events 2>/dev/null &&
     echo 'p:bt_sync_cpu arch_sync_dma_for_cpu' >> $T/kprobe_events 2>/dev/null &&
     echo 'r:bt_prot dma_pgprot prot=$retval:x64' >> $T/kprobe_events 2>/dev/null; then
    for blk in /sys/block/vd*; do
      [ -e "$blk" ] || continue
      serial=$(cat "$blk/serial" 2>/dev/null)
      vdev=$(basename "$(readlink -f "$blk/device")")
      d0=$(hits bt_sync_dev); c0=$(hits bt_sync_cpu)
      echo > $T/trace
      echo 1 > $T/events/kprobes/enable
      echo "$vdev" > /sys/bus/virtio/drivers/virtio_blk/unbind
      echo "$vdev" > /sys/bus/virtio/drivers/virtio_blk/bind
      dev=
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        dev=$(ls /sys/bus/virtio/devices/"$vdev"/block 2>/dev/null | head -n 1)
        [ -n "$dev" ] && [ -b "/dev/$dev" ] && break
        sleep 0.5
      done
      [ -n "$dev" ] && dd if="/dev/$dev" of=/dev/null bs=65536 count=16 iflag=direct 2>/dev/null
      echo 0 > $T/events/kprobes/enable
      d1=$(hits bt_sync_dev); c1=$(hits bt_sync_cpu)
      # AttrIndx, bits 4:2 of the descriptor: 0 MT_NORMAL, 2 MT_NORMAL_NC (arch/arm64/include/asm/memory.h)
      prot=$(grep -o 'prot=0x[0-9a-f]*' $T/trace | sort -u | while read -r p; do
        case $(( (${p#prot=} >> 2) & 7 )) in 0) echo normal ;; 2) echo normal-nc ;; *) echo "attr$(( (${p#prot=} >> 2) & 7 ))" ;; esac
      done | sort -u | tr '\n' ',' | sed 's/,$//')
      echo "DMAVM bt_coherency=${serial:--} sync_for_device=$((d1 - d0)) sync_for_cpu=$((c1 - c0)) prot=${prot:-none}"
    done
    echo > $T/kprobe_events
  else
    echo "DMAVM bt_coherency_error=kprobes_unavailable"
  fi
fi

macs=
for w in $(cat /proc/cmdline); do
  case $w in dmavm.bt_net=*) macs=${w#dmavm.bt_net=} ;; esac
done
i=0
for mac in $(echo "$macs" | tr ',' ' '); do
  host=169.254.$((10 + i)).1
  iface=none
  for n in /sys/class/net/*; do
    [ "$(cat "$n/address" 2>/dev/null)" = "$mac" ] && iface=$(basename "$n")
  done
  echo "DMAVM bt_net=$mac host=$host iface=$iface"
  st=1
  if [ "$iface" != none ]; then
    sh /checks/net-exchange.sh "$iface" "$host" "169.254.$((10 + i)).2/24"; st=$?
  fi
  echo "DMAVM bt_net_end=$mac status=$st"
  i=$((i + 1))
done

structures=$(sh /checks/dmar-structures.sh)
echo "DMAVM bt_dmar_units=$(ls -d /sys/class/iommu/dmar* 2>/dev/null | wc -l) structures=${structures:-none}"

if [ -s /etc/boot-test/patterns ]; then
  bad=$(dmesg | grep -c -E -f /etc/boot-test/patterns)
  dmesg | grep -E -f /etc/boot-test/patterns | head -n 20 | sed 's/^/DMAVM-KLOG /'
else
  bad=-
fi
echo "DMAVM bt_klog_bad=$bad"
echo "DMAVM bt_done=1"
