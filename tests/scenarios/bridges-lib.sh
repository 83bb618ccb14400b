#!/bin/sh
# bridges-lib.sh - sourced by the bridges-* scenarios (running it alone does
# nothing); sources linux-lib.sh.
# bridges_run DMAVM_OPTIONS...: a guest with the disks of prepare_disks in
# /tmp/bridges (rand, scratch, ro) plus rand1.img (3 MiB of random bytes,
# its checksum printed as `DMAVM host_rand1_sha=`), placed by the options
# (which name them $d/NAME.img), running the bridges check; then the IOMMU
# counters per device and the host-side disk checks.
# env: DMAVM (dmavm binary), GUEST (guest images)
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/bridges

bridges_run() {
  # shellcheck disable=SC2086 # a list of options
  boot_guest_with vmlinux 2 256M bridges "$@"
  report_iommu_stats
  check_disks $d
  rm -rf $d
}

bridges_disks() {
  prepare_disks $d
  dd if=/dev/urandom of=$d/rand1.img bs=1048576 count=3 2>/dev/null
  echo "DMAVM host_rand1_sha=$(sha256sum $d/rand1.img | cut -d' ' -f1)"
}
