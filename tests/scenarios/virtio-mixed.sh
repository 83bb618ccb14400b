#!/bin/sh
# virtio-mixed.sh - the virtio-mmio scenario's disks and RNG on both
# transports at once: the random disk, the read-only disk and the RNG on
# virtio-pci (functions 00:01.0, 00:02.0, 00:03.0), the scratch disk on
# virtio-mmio.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/virtio-mixed
prepare_disks $d
DISKS="--disk path=$d/rand.img,id=rand,transport=pci --disk path=$d/scratch.img,id=scratch,transport=mmio"
DISKS="$DISKS --disk path=$d/ro.img,id=ro,readonly=on,transport=pci --rng transport=pci"
# shellcheck disable=SC2086 # DISKS is a list of options
boot_guest_with vmlinux 2 256M virtio $DISKS
check_disks $d
rm -rf $d
