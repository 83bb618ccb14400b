#!/bin/sh
# hotplug.sh - follows the disks the host plugs into and out of the running
# guest through dmavm's control socket (Linux's acpiphp drives the slots the
# firmware declared) and waits for the ACPI power button.
#   DMAVM hp_ready=1                  watching (the host may start)
#   DMAVM hp_seen=ID                  a disk's block device appeared
#   DMAVM hp_add=ID pci=S:B:D.F group=G|none platform=0|1 sha=SHA256
#                                     a disk appeared (ID: its serial, the
#                                     host's id=; platform: the negotiated
#                                     VIRTIO_F_ACCESS_PLATFORM, bit 33); it
#                                     was read whole for the checksum
#   DMAVM hp_gone=ID                  a disk left
#   DMAVM hp_console=hvc0 pci=S:B:D.F group=G|none platform=0|1
#                                     a virtio console appeared; the
#                                     guest then writes hvc-hello-hotplug
#                                     to it and reads one line (hvc.sh):
#   DMAVM hp_console_read=LINE        what the host typed (dmavm's stdin)
#   DMAVM hp_gone=console             the console left; the guest then
#                                     writes uart-hello-hotplug to ttyS0
#                                     and reads one line:
#   DMAVM hp_uart_read=LINE           what the host typed, through the UART
#   DMAVM hp_dmesg_bad=N              kernel warnings, DMAR or IOMMU faults
#                                     so far, after each change
#   DMAVM power_button=pressed        the button's key event arrived; then
#                                     the guest powers off
# It never ends by itself otherwise.
insmod /lib/modules/evdev.ko 2>/dev/null || echo "DMAVM hp_error=insmod_evdev"
insmod /lib/modules/button.ko 2>/dev/null || echo "DMAVM hp_error=insmod_button"

power_button() {
  ev=
  for e in /sys/class/input/event*; do
    [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] && ev=/dev/input/$(basename "$e")
  done
  [ -n "$ev" ] || { echo "DMAVM hp_error=no_power_button"; return; }
  # One struct input_event (24 bytes on a 64-bit kernel) is the press.
  dd if="$ev" of=/dev/null bs=24 count=1 2>/dev/null
  echo "DMAVM power_button=pressed"
  sync
  poweroff -f
}
power_button &

# kernel warnings, DMAR or IOMMU faults, virtio errors ("Default domain
# type" is not a fault)
BAD='WARNING:|BUG:|Oops|DMAR:.*[Ff]ault|iommu.*: fault|[Pp]age fault|virtio.*(error|failed)'
reported=0
# prints the count of bad kernel lines so far, and each new one (quiet: not
# on the console); runs in this shell, so `reported` persists
report_bad() {
  n=$(dmesg | grep -cE "$BAD")
  [ "$n" -gt "$reported" ] && dmesg | grep -E "$BAD" | tail -n $((n - reported)) | head -n 3 | sed 's/^/hp_dmesg: /'
  reported=$n
  echo "DMAVM hp_dmesg_bad=$n"
}
# The virtio console's function: its virtio device has id 3 (virtio 1.3
# 5.3); prints "pci=... group=... platform=..." of it.
console_function() {
  for v in /sys/bus/virtio/devices/virtio*; do
    [ "$(cat "$v/device" 2>/dev/null)" = 0x0003 ] || continue
    pci_dir=$(dirname "$(readlink -f "$v")")
    group=none
    [ -e "$pci_dir/iommu_group" ] && group=$(basename "$(readlink "$pci_dir/iommu_group")")
    echo "pci=$(basename "$pci_dir") group=$group platform=$(cut -c34 "$v/features")"
  done
}

# A console plugged in: a line out to the host (hvc-hello-hotplug), one
# line in from it.
console_check() {
  i=0
  # The function shows in sysfs before the driver has its tty (up to 30 s:
  # a nested guest's probe can take seconds).
  until (: <>/dev/hvc0) 2>/dev/null || [ $i -ge 150 ]; do i=$((i + 1)); sleep 0.2; done
  if ! (: <>/dev/hvc0) 2>/dev/null; then
    # what the guest had instead, for the report
    for v in /sys/bus/virtio/devices/virtio*; do
      [ "$(cat "$v/device" 2>/dev/null)" = 0x0003 ] || continue
      echo "DMAVM hp_console_driver=$(basename "$(readlink "$v/driver" 2>/dev/null)") status=$(cat "$v/status" 2>/dev/null)"
    done
    echo "DMAVM hp_console_nodes=$(ls /dev | grep -c '^hvc')"
    dmesg | grep -iE 'virtio|hvc|console' | tail -n 5 | sed 's/^/hp_console_dmesg: /'
  fi
  sh /checks/hvc.sh /dev/hvc0 hvc-hello-hotplug hp_console_read
}

seen=" "
console=0
echo "DMAVM hp_ready=1"
while :; do
  now=" "
  for blk in /sys/block/vd*; do
    [ -e "$blk" ] || continue
    id=$(cat "$blk/serial" 2>/dev/null)
    now="$now$id "
    case $seen in *" $id "*) continue ;; esac
    echo "DMAVM hp_seen=$id"
    virtio=$(readlink -f "$blk/device")
    pci_dir=$(dirname "$virtio")
    group=none
    [ -e "$pci_dir/iommu_group" ] && group=$(basename "$(readlink "$pci_dir/iommu_group")")
    platform=$(cut -c34 "$virtio/features")
    sha=$(sha256sum "/dev/$(basename "$blk")" | cut -d' ' -f1)
    echo "DMAVM hp_add=$id pci=$(basename "$pci_dir") group=$group platform=$platform sha=$sha"
    report_bad
  done
  for id in $seen; do
    case $now in *" $id "*) ;; *) echo "DMAVM hp_gone=$id"; report_bad ;; esac
  done
  seen=$now
  # Not /dev/hvc0: the hvc driver registers all its nodes with its first
  # console and keeps them.
  function=$(console_function)
  if [ -n "$function" ] && [ $console = 0 ]; then
    console=1
    echo "DMAVM hp_console=hvc0 $function"
    report_bad
    console_check &
  elif [ -z "$function" ] && [ $console = 1 ]; then
    console=0
    echo "DMAVM hp_gone=console"
    report_bad
    # The console gone, the terminal's input is the UART's again.
    sh /checks/hvc.sh /dev/ttyS0 uart-hello-hotplug hp_uart_read &
  fi
  sleep 0.2
done
