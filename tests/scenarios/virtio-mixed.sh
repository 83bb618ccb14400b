#!/bin/sh
# virtio-mixed.sh - the virtio-mmio scenario's disks and RNG on both
# transports at once: the random disk, the read-only disk and the RNG on
# virtio-pci (functions 00:01.0, 00:02.0, 00:03.0), the scratch disk on
# virtio-mmio.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
d=/tmp/virtio-mixed; rm -rf $d; mkdir -p $d
dd if=/dev/urandom of=$d/rand.img bs=1048576 count=4 2>/dev/null
dd if=/dev/zero of=$d/scratch.img bs=1048576 count=2 2>/dev/null
dd if=/dev/urandom of=$d/ro.img bs=1048576 count=1 2>/dev/null
echo "DMAVM host_rand_sha=$(sha256sum $d/rand.img | cut -d' ' -f1)"
ro_before=$(sha256sum $d/ro.img | cut -d' ' -f1)
DISKS="--disk path=$d/rand.img,id=rand,transport=pci --disk path=$d/scratch.img,id=scratch,transport=mmio"
DISKS="$DISKS --disk path=$d/ro.img,id=ro,readonly=on,transport=pci --rng transport=pci"
# shellcheck disable=SC2086 # DISKS is a list of options
boot_guest_with vmlinux 2 256M virtio $DISKS
expected=$(yes dmavm-pattern | head -c 1048576 | sha256sum | cut -d' ' -f1)
got=$(head -c 1048576 $d/scratch.img | sha256sum | cut -d' ' -f1)
echo "DMAVM host_scratch_match=$([ "$expected" = "$got" ] && echo 1 || echo 0)"
echo "DMAVM host_ro_unchanged=$([ "$ro_before" = "$(sha256sum $d/ro.img | cut -d' ' -f1)" ] && echo 1 || echo 0)"
rm -rf $d
