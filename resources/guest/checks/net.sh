#!/bin/sh
# net.sh - exercise the virtio-net device the host gave this guest, whose
# TAP has 169.254.10.1 with an HTTP server on port 8080 (tests/scenarios/
# net-lib.sh): list every virtio device (as virtio.sh), then on the one
# network interface net-exchange.sh's exchange with 169.254.10.2/24
# (link-local only): a ping, /data down and back up, each checksummed.
host=169.254.10.1
fail=0
for dev in /sys/bus/virtio/devices/virtio*; do
  [ -e "$dev" ] || continue
  parent_dir=$(dirname "$(readlink -f "$dev")")
  parent=$(basename "$parent_dir")
  group=none
  [ -e "$parent_dir/iommu_group" ] && group=$(basename "$(readlink "$parent_dir/iommu_group")")
  echo "DMAVM virtio=$(basename "$dev") device=$(cat "$dev/device") parent=$parent group=$group" \
    "features=$(cat "$dev/features")"
done
iface=
for n in /sys/class/net/*; do
  [ "$(basename "$n")" = lo ] || iface=$(basename "$n")
done
if [ -z "$iface" ]; then
  echo "DMAVM net_iface=none"
  exit 1
fi
sh /checks/net-exchange.sh "$iface" "$host" 169.254.10.2/24 || fail=1
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops|virtio.*(error|failed)|virtio_net.*(bad|error)')
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 5 'WARNING:|BUG:|Oops|virtio.*(error|failed)|virtio_net.*(bad|error)'; fail=1; }
[ $fail -eq 0 ] || exit 1
poweroff -f
