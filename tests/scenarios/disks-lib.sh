#!/bin/sh
# disks-lib.sh - sourced by linux-lib.sh and arm64-lib.sh (running it alone
# does nothing): the host side of the guests' disks and IOMMU counters.

# prepare_disks DIR: a fresh DIR with the virtio scenarios' disks: rand.img
# (4 MiB of random bytes, whose checksum it prints as
# `DMAVM host_rand_sha=`), scratch.img (2 MiB of zeros) and ro.img (1 MiB of
# random bytes, whose checksum it keeps in $ro_before for check_disks).
prepare_disks() {
  rm -rf "$1"; mkdir -p "$1"
  dd if=/dev/urandom of="$1/rand.img" bs=1048576 count=4 2>/dev/null
  dd if=/dev/zero of="$1/scratch.img" bs=1048576 count=2 2>/dev/null
  dd if=/dev/urandom of="$1/ro.img" bs=1048576 count=1 2>/dev/null
  echo "DMAVM host_rand_sha=$(sha256sum "$1/rand.img" | cut -d' ' -f1)"
  ro_before=$(sha256sum "$1/ro.img" | cut -d' ' -f1)
}

# check_disks DIR: after the guest ran, prints whether it wrote its pattern
# to scratch.img (`DMAVM host_scratch_match=1`) and left ro.img as it was
# (`DMAVM host_ro_unchanged=1`).
check_disks() {
  expected=$(yes dmavm-pattern | head -c 1048576 | sha256sum | cut -d' ' -f1)
  got=$(head -c 1048576 "$1/scratch.img" | sha256sum | cut -d' ' -f1)
  echo "DMAVM host_scratch_match=$([ "$expected" = "$got" ] && echo 1 || echo 0)"
  echo "DMAVM host_ro_unchanged=$([ "$ro_before" = "$(sha256sum "$1/ro.img" | cut -d' ' -f1)" ] && echo 1 || echo 0)"
}

# report_iommu_stats: turns dmavm's --stats lines in $log into
# "DMAVM stats_<device>=<map>,<unmap>,<translations>,<misses>,<faults>,<refused attach>" lines.
report_iommu_stats() {
  sed -n 's/^dmavm: stats: \([a-z0-9_-]*\): endpoint [^:]*: domain [^,]*, \([0-9]*\) map, \([0-9]*\) unmap, \([0-9]*\) translations, \([0-9]*\) IOTLB misses, \([0-9]*\) faults, \([0-9]*\) refused attach$/DMAVM stats_\1=\2,\3,\4,\5,\6,\7/p' "$log"
}

# report_vtd_stats: turns dmavm's --stats lines of VT-d devices in $log into
# "DMAVM vtd_<device>=<translations>,<IOTLB misses>,<context-cache misses>,<invalidations>,<faults>,<untranslated>" lines.
report_vtd_stats() {
  sed -n 's/^dmavm: stats: \([a-z0-9_-]*\): dmar[0-9]* source-id [^:]*:[^:]*: domain [^,]*, \([0-9]*\) translations, \([0-9]*\) IOTLB misses, \([0-9]*\) context-cache misses, \([0-9]*\) invalidations, \([0-9]*\) faults, \([0-9]*\) untranslated.*$/DMAVM vtd_\1=\2,\3,\4,\5,\6,\7/p' "$log"
}
