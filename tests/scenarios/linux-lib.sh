#!/bin/sh
# linux-lib.sh - sourced by the linux-* and virtio-* scenarios (running it
# alone does nothing). boot_guest KERNEL CPUS MEMORY CHECK [CMDLINE...] boots
# $GUEST/KERNEL (vmlinuz = bzImage, vmlinux = PVH ELF) with the test
# initramfs and dmavm.check=CHECK, prints the guest's DMAVM lines, dmavm's
# own error lines and `DMAVM vmm_status=N`, and leaves N in $status.
# env: DMAVM (dmavm binary), GUEST (guest images)
boot_guest() {
  kernel=$1 cpus=$2 memory=$3 check=$4
  shift 4
  log=/tmp/boot-$$.log
  "$DMAVM" run --kernel "$GUEST/$kernel" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check $*" > "$log" 2> "$log.err"
  status=$?
  stderr_after_console
  report
}

# boot_guest_with KERNEL CPUS MEMORY CHECK [DMAVM OPTIONS...]: the same with
# extra dmavm options (devices) instead of extra command-line words.
boot_guest_with() {
  kernel=$1 cpus=$2 memory=$3 check=$4
  shift 4
  log=/tmp/boot-$$.log
  "$DMAVM" run --kernel "$GUEST/$kernel" --initrd "$GUEST/initramfs.cpio.gz" --cpus "$cpus" \
    --memory "$memory" --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=$check ${EXTRA_CMDLINE:-}" "$@" \
    > "$log" 2> "$log.err"
  status=$?
  stderr_after_console
  report
}

# dmavm's own lines (stderr) after the guest's console (stdout): written
# to one file as they come, a host warning could cut a guest line in two
stderr_after_console() {
  cat "$log.err" >> "$log"
  rm -f "$log.err"
}

# the disks' host side and the IOMMU counters
. "$(dirname "$0")/disks-lib.sh"

report() {
  grep -E '^DMAVM |dmavm: |WARNING:|BUG:|Oops|Kernel panic' "$log" | head -n 40
  echo "DMAVM vmm_status=$status"
}

# iommu_scenario: a guest with a virtio-iommu translating a disk on PCI, a
# disk on virtio-mmio and the RNG, plus one disk on PCI bypassing it
# (direct-ram-access=on), running the virtio check; reports its lines, the
# IOMMU counters per device and the host-side disk checks. Guest kernel
# options (iommu.strict=1, iommu.passthrough=1) come in $EXTRA_CMDLINE,
# the IOMMU's and the RNG's transports in $IOMMU_TRANSPORT and
# $RNG_TRANSPORT (default pci).
iommu_scenario() {
  d=/tmp/iommu
  prepare_disks $d
  devices="--iommu transport=${IOMMU_TRANSPORT:-pci} --stats --disk path=$d/rand.img,id=rand,transport=pci"
  devices="$devices --disk path=$d/scratch.img,id=scratch,transport=mmio"
  devices="$devices --disk path=$d/ro.img,id=ro,readonly=on,transport=pci,direct-ram-access=on"
  # shellcheck disable=SC2086 # a list of options
  boot_guest_with vmlinux 2 256M virtio $devices --rng transport=${RNG_TRANSPORT:-pci}
  report_iommu_stats
  check_disks $d
  rm -rf $d
}

# vtd_scenario [IOMMU OPTIONS]: a guest with an emulated VT-d unit
# (--iommu type=vtd[,IOMMU OPTIONS]) translating a disk read whole (rand,
# 00:01.0), a disk written (scratch, 00:02.0) and the RNG (00:04.0), all on
# PCI (Linux finds a VT-d unit only for PCI functions), plus one PCI disk
# bypassing it (ro, 00:03.0, direct-ram-access=on, in no DMAR scope),
# running the vtd check; reports its lines, the VT-d counters per device
# and the host-side disk checks. Guest kernel options (intel_iommu=on and
# the invalidation mode) come in $EXTRA_CMDLINE.
vtd_scenario() {
  d=/tmp/vtd
  prepare_disks $d
  iommu=type=vtd${1:+,$1}
  devices="--iommu $iommu --stats --disk path=$d/rand.img,id=rand,transport=pci"
  devices="$devices --disk path=$d/scratch.img,id=scratch,transport=pci"
  devices="$devices --disk path=$d/ro.img,id=ro,readonly=on,transport=pci,direct-ram-access=on"
  # shellcheck disable=SC2086 # a list of options
  boot_guest_with vmlinux 2 256M vtd $devices --rng transport=pci
  report_vtd_stats
  check_disks $d
  rm -rf $d
}

# mixed_coherency_scenario POLICY: a guest with a virtio-iommu
# (mixed-coherency=POLICY) translating two PCI disks of different declared
# coherency: rand (4 MiB) on the coherent default bridge, rand1 (3 MiB) on
# bridge nc (segment 1, coherent=off). The vfio check reads both through
# virtio-blk, then puts both in one VFIO container, so that the guest
# kernel tries to share one IOMMU domain between them. Reports the checks'
# lines, the host checksums and the IOMMU counters per disk.
mixed_coherency_scenario() {
  d=/tmp/mixed
  rm -rf $d; mkdir -p $d
  dd if=/dev/urandom of=$d/rand.img bs=1048576 count=4 2>/dev/null
  dd if=/dev/urandom of=$d/rand1.img bs=1048576 count=3 2>/dev/null
  echo "DMAVM host_rand_sha=$(sha256sum $d/rand.img | cut -d' ' -f1)"
  echo "DMAVM host_rand1_sha=$(sha256sum $d/rand1.img | cut -d' ' -f1)"
  boot_guest_with vmlinux 2 256M vfio --iommu "mixed-coherency=$1" --stats \
    --pci-bridge id=nc,coherent=off \
    --disk path=$d/rand.img,id=rand,transport=pci --disk path=$d/rand1.img,id=rand1,transport=pci,bridge=nc
  report_iommu_stats
  rm -rf $d
}

# fault_scenario [IOMMU OPTION...]: a guest with an IOMMU (--iommu with the
# given options, default a virtio-iommu on PCI) translating two PCI disks,
# rand (4 MiB) and victim (1 MiB, sacrificial), running the iommu-fault
# check: the victim, driven through VFIO, is made to DMA to IOVAs its
# domain does not map. Reports the check's lines, the host checksums of
# rand and of the victim's first sector, the IOMMU counters per disk and
# the victim's endpoint ID (DMAVM stats_victim_endpoint=0x..); on a VT-d
# machine the VT-d counters per disk and the victim's source ID instead
# (DMAVM vtd_victim_source_id=bb:dd.f).
fault_scenario() {
  d=/tmp/fault
  rm -rf $d; mkdir -p $d
  dd if=/dev/urandom of=$d/rand.img bs=1048576 count=4 2>/dev/null
  dd if=/dev/urandom of=$d/victim.img bs=1048576 count=1 2>/dev/null
  echo "DMAVM host_rand_sha=$(sha256sum $d/rand.img | cut -d' ' -f1)"
  echo "DMAVM host_victim_sector0_sha=$(head -c 512 $d/victim.img | sha256sum | cut -d' ' -f1)"
  iommu=$(IFS=,; echo "${*:-transport=pci}")
  boot_guest_with vmlinux 2 256M iommu-fault --iommu "$iommu" --stats \
    --disk path=$d/rand.img,id=rand,transport=pci --disk path=$d/victim.img,id=victim,transport=pci
  report_iommu_stats
  sed -n 's/^dmavm: stats: victim: endpoint \(0x[0-9a-f]*\):.*/DMAVM stats_victim_endpoint=\1/p' "$log"
  report_vtd_stats
  sed -n 's/^dmavm: stats: victim: dmar[0-9]* source-id \([0-9a-f]*:[0-9a-f]*\.[0-7]\):.*/DMAVM vtd_victim_source_id=\1/p' "$log"
  rm -rf $d
}
