#!/bin/sh
# net-lib.sh - sourced by the net-* scenarios (running it alone does
# nothing): a guest with one virtio-net device on a TAP in a network
# namespace of its own inside the host, running the net check (ping, then
# a file down over HTTP and back up over a plain TCP stream, each way
# checksummed).
#
# net_scenario KEYS [DMAVM OPTIONS...]: call it from a scenario that runs in its
# own network namespace (see in_netns). It loads tun if needed, makes tap0
# with 169.254.10.1/24 (link-local only; the guest takes 169.254.10.2),
# serves NET_MIB MiB of random bytes (default 64, see below) with busybox httpd on
# port 8080, takes what the guest sends back with nc on port 9000, and
# boots the guest with
# `--net tap=tap0KEYS` (KEYS: ",key=value..." or empty) and the other
# options (--stats always), with linux-lib.sh's boot_guest_with (x86_64)
# or, when the scenario sourced arm64-lib.sh, its arm64_boot. Prints the
# guest's lines and DMAVM host_data_sha=, host_data_bytes=, host_up=SHA,BYTES
# (what nc received), host_secs= (the guest's whole run, host clock)
# and the counters of --stats (report_iommu_stats, report_net_stats).
# env: DMAVM (dmavm binary), GUEST (guest images), NET_MIB, EXTRA_CMDLINE

# in_netns SCRIPT [ARGS...]: runs SCRIPT again in a new network namespace
# (once: DMAVM_IN_NETNS marks the second run) and exits with its status.
# The TAP, its address and the server exist only there and vanish with it.
in_netns() {
  [ -n "${DMAVM_IN_NETNS:-}" ] && return 0
  DMAVM_IN_NETNS=1 exec unshare -n sh "$@"
}

# report_net_stats: dmavm's --stats line of each network device in $log as
# "DMAVM netstats_<device>=rx_frames,rx_bytes,rx_dropped,rx_stalls,tx_frames,tx_bytes,tx_dropped,backend_errors".
report_net_stats() {
  sed -n 's/^dmavm: stats: \([a-z0-9_-]*\): rx \([0-9]*\) frames \([0-9]*\) bytes \([0-9]*\) dropped \([0-9]*\) stalls (no receive buffers); tx \([0-9]*\) frames \([0-9]*\) bytes \([0-9]*\) dropped; \([0-9]*\) backend errors\(; .*\)*$/DMAVM netstats_\1=\2,\3,\4,\5,\6,\7,\8,\9/p' "$log"
}

net_scenario() {
  keys=$1
  shift
  if [ ! -c /dev/net/tun ]; then
    out=$(insmod /lib/modules/tun.ko 2>&1) || { echo "DMAVM error=tun_module: $out"; return 1; }
  fi
  d=/tmp/net
  rm -rf $d; mkdir -p $d/www
  # 64 MiB each way: tens of thousands of frames, and on a translated
  # device over a hundred thousand IOMMU maps and unmaps.
  mib=${NET_MIB:-64}
  dd if=/dev/urandom of=$d/www/data bs=1048576 count="$mib" 2>/dev/null
  echo "DMAVM host_data_sha=$(sha256sum $d/www/data | cut -d' ' -f1) host_data_bytes=$(wc -c < $d/www/data)"
  ip link set lo up
  tunctl -t tap0 > /dev/null || { echo "DMAVM error=tunctl"; return 1; }
  ip addr add 169.254.10.1/24 dev tap0
  ip link set tap0 up
  httpd -f -p 169.254.10.1:8080 -h $d/www &
  server=$!
  # busybox nc stops at the end of its own input: a FIFO held open (fd 3)
  # keeps it reading until the guest has sent everything and closed.
  rm -f $d/hold; mkfifo $d/hold
  nc -l -p 9000 < $d/hold > $d/up &
  receiver=$!
  exec 3> $d/hold
  t0=$(cut -d' ' -f1 /proc/uptime)
  # arm64-lib.sh's boot where a scenario sourced it, linux-lib.sh's else
  if command -v arm64_boot > /dev/null; then
    arm64_boot 1 512M net --stats --net "tap=tap0$keys" "$@"
  else
    boot_guest_with vmlinux 1 512M net --stats --net "tap=tap0$keys" "$@"
  fi
  t1=$(cut -d' ' -f1 /proc/uptime)
  kill $server 2>/dev/null
  exec 3>&-
  kill $receiver 2>/dev/null
  up=$(sha256sum < $d/up | cut -d' ' -f1),$(wc -c < $d/up)
  echo "DMAVM host_up=$up host_secs=$(awk "BEGIN { print $t1 - $t0 }")"
  report_iommu_stats
  report_net_stats
  rm -rf $d
}
