#!/bin/sh
# net.sh - exercise the virtio-net device the host gave this guest, whose
# TAP has 169.254.10.1 with an HTTP server on port 8080 (tests/scenarios/
# net-lib.sh): list every virtio device (as virtio.sh), bring the interface
# up with 169.254.10.2/24 (link-local only), ping the host, fetch /data and
# print its SHA-256 and size, send it back over TCP to port 9000 (the host
# checksums what it got), and print how long each took.
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
echo "DMAVM net_iface=$iface net_mac=$(cat "/sys/class/net/$iface/address")" \
  "net_driver=$(basename "$(readlink "/sys/class/net/$iface/device/driver")")"
ip link set lo up
ip link set "$iface" up
ip addr add 169.254.10.2/24 dev "$iface"
echo "DMAVM net_carrier=$(cat "/sys/class/net/$iface/carrier" 2>/dev/null)"
if ping -c 3 -W 10 "$host" > /dev/null 2>&1; then echo "DMAVM ping=1"; else echo "DMAVM ping=0"; fail=1; fi
now() { cut -d' ' -f1 /proc/uptime; }
t0=$(now)
wget -q -O /tmp/data "http://$host:8080/data" || fail=1
t1=$(now)
echo "DMAVM down_sha=$(sha256sum /tmp/data | cut -d' ' -f1) down_bytes=$(wc -c < /tmp/data)" \
  "down_secs=$(awk "BEGIN { print $t1 - $t0 }")"
t0=$(now)
# busybox wget cannot post binary data (it measures the body with strlen)
nc "$host" 9000 < /tmp/data || fail=1
t1=$(now)
echo "DMAVM up_secs=$(awk "BEGIN { print $t1 - $t0 }")"
rm -f /tmp/data
bad=$(dmesg | grep -cE 'WARNING:|BUG:|Oops|virtio.*(error|failed)|virtio_net.*(bad|error)')
echo "DMAVM dmesg_bad=$bad"
[ "$bad" -eq 0 ] || { dmesg | grep -E -m 5 'WARNING:|BUG:|Oops|virtio.*(error|failed)|virtio_net.*(bad|error)'; fail=1; }
[ $fail -eq 0 ] || exit 1
poweroff -f
