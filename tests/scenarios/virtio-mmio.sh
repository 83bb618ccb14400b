#!/bin/sh
# virtio-mmio.sh - a guest with three virtio-blk disks and a virtio-rng, all
# on virtio-mmio: a random disk the guest checksums, a scratch disk it
# writes a pattern to before powering off (the host checks the file), a
# read-only disk it must fail to write; 1 MiB from /dev/hwrng.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/virtio-mmio
prepare_disks $d
DISKS="--disk path=$d/rand.img,id=rand,transport=mmio --disk path=$d/scratch.img,id=scratch,transport=mmio"
DISKS="$DISKS --disk path=$d/ro.img,id=ro,readonly=on,transport=mmio --rng transport=mmio"
# shellcheck disable=SC2086 # DISKS is a list of options
boot_guest_with vmlinux 1 256M virtio $DISKS
check_disks $d
rm -rf $d
