#!/bin/sh
# net-exchange.sh IFACE HOST GUEST/PREFIX - the guest's half of a network
# check (net.sh, boot-test.sh): bring IFACE up with the link-local address
# GUEST/PREFIX, ping HOST, fetch http://HOST:8080/data, print its SHA-256
# and size, send it back over a plain TCP stream to HOST port 9000 (the host
# checksums what it got), and print how long each took. The host side
# serves and receives (tests/scenarios/net-lib.sh with busybox httpd and
# nc, `dmavm boot-test`'s peer in boot-test/src/net_peer.rs).
#   net_iface=IFACE net_mac=MAC net_driver=DRIVER
#   net_carrier=0|1                          the link as the guest sees it
#   ping=0|1                                 HOST answered
#   down_sha=S down_bytes=N down_secs=T      what arrived (- when wget failed)
#   up_secs=T up_ok=0|1                      whether nc sent it all (the
#       first word's place is what tests/scenarios/bench-net.sh reads)
# Exits 1 when any step failed.
iface=$1 host=$2 addr=$3
fail=0
echo "DMAVM net_iface=$iface net_mac=$(cat "/sys/class/net/$iface/address")" \
  "net_driver=$(basename "$(readlink "/sys/class/net/$iface/device/driver")")"
ip link set lo up
ip link set "$iface" up
ip addr add "$addr" dev "$iface"
echo "DMAVM net_carrier=$(cat "/sys/class/net/$iface/carrier" 2>/dev/null)"
if ping -c 3 -W 10 "$host" > /dev/null 2>&1; then echo "DMAVM ping=1"; else echo "DMAVM ping=0"; fail=1; fi
now() { cut -d' ' -f1 /proc/uptime; }
t0=$(now)
if wget -q -O /tmp/net-data "http://$host:8080/data"; then
  sha=$(sha256sum /tmp/net-data | cut -d' ' -f1)
else
  sha=- fail=1
fi
t1=$(now)
echo "DMAVM down_sha=$sha down_bytes=$(wc -c 2>/dev/null < /tmp/net-data || echo 0)" \
  "down_secs=$(awk "BEGIN { print $t1 - $t0 }")"
t0=$(now)
# busybox wget cannot post binary data (it measures the body with strlen)
if nc "$host" 9000 < /tmp/net-data; then up=1; else up=0 fail=1; fi
t1=$(now)
echo "DMAVM up_secs=$(awk "BEGIN { print $t1 - $t0 }") up_ok=$up"
rm -f /tmp/net-data
exit $fail
