#!/bin/sh
# arm64-lib.sh - sourced by the arm64-* scenarios (running it alone does
# nothing); the arm64 twin of linux-lib.sh. arm64_boot CPUS MEMORY CHECK
# [DMAVM OPTIONS...] boots $GUEST/Image (Debian's arm64 cloud kernel) with
# the test initramfs and dmavm.check=CHECK on the 16550A console (ttyS0),
# prints the guest's DMAVM lines, dmavm's own error lines,
# `DMAVM vmm_status=N` and `DMAVM vmm_ms=T` (dmavm's wall-clock run time,
# from L1), and leaves N in $status. Extra guest command-line words come in
# $EXTRA_CMDLINE.
# env: DMAVM (the aarch64 dmavm), GUEST (Image, initramfs.cpio.gz)
arm64_boot() {
  cpus=$1 memory=$2 check=$3
  shift 3
  log=/tmp/arm64-boot-$$.log
  read -r t0 _ < /proc/uptime
  "$DMAVM" run --kernel "$GUEST/Image" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check ${EXTRA_CMDLINE:-}" "$@" \
    > "$log" 2>&1
  status=$?
  read -r t1 _ < /proc/uptime
  grep -E '^DMAVM |dmavm: |WARNING:|BUG:|Oops|Kernel panic|Unable to handle' "$log" | head -n 60
  echo "DMAVM vmm_status=$status vmm_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')"
}

# prepare_disks DIR: a fresh DIR with rand.img (4 MiB of random bytes, its
# checksum printed as `DMAVM host_rand_sha=`), scratch.img (2 MiB of zeros)
# and ro.img (1 MiB of random bytes, its checksum kept for check_disks), as
# linux-lib.sh's (which the arm64 L1 does not carry).
prepare_disks() {
  rm -rf "$1"; mkdir -p "$1"
  dd if=/dev/urandom of="$1/rand.img" bs=1048576 count=4 2>/dev/null
  dd if=/dev/zero of="$1/scratch.img" bs=1048576 count=2 2>/dev/null
  dd if=/dev/urandom of="$1/ro.img" bs=1048576 count=1 2>/dev/null
  echo "DMAVM host_rand_sha=$(sha256sum "$1/rand.img" | cut -d' ' -f1)"
  ro_before=$(sha256sum "$1/ro.img" | cut -d' ' -f1)
}

# check_disks DIR: whether the guest wrote its pattern to scratch.img
# (`DMAVM host_scratch_match=1`) and left ro.img as it was
# (`DMAVM host_ro_unchanged=1`).
check_disks() {
  expected=$(yes dmavm-pattern | head -c 1048576 | sha256sum | cut -d' ' -f1)
  got=$(head -c 1048576 "$1/scratch.img" | sha256sum | cut -d' ' -f1)
  echo "DMAVM host_scratch_match=$([ "$expected" = "$got" ] && echo 1 || echo 0)"
  echo "DMAVM host_ro_unchanged=$([ "$ro_before" = "$(sha256sum "$1/ro.img" | cut -d' ' -f1)" ] && echo 1 || echo 0)"
}

# report_iommu_stats: dmavm's --stats lines in $log as
# "DMAVM stats_<device>=<map>,<unmap>,<translations>,<misses>,<faults>,<refused attach>".
report_iommu_stats() {
  sed -n 's/^dmavm: stats: \([a-z0-9_-]*\): endpoint [^:]*: domain [^,]*, \([0-9]*\) map, \([0-9]*\) unmap, \([0-9]*\) translations, \([0-9]*\) IOTLB misses, \([0-9]*\) faults, \([0-9]*\) refused attach$/DMAVM stats_\1=\2,\3,\4,\5,\6,\7/p' "$log"
}
