#!/bin/sh
# bench-hotplug.sh - PCI hot-plug latency, dmavm and QEMU side by side in
# this L1: the same guest (check hotplug.sh, whose Linux drives ACPI PCI
# hot-plug), a disk behind a virtio-iommu plugged in and removed
# BENCH_RUNS times per VM, two VMs of each alternating. dmavm: `dmavm ctl
# add-device` onto a translated hotplug=on bridge, `remove-device` (its
# reply comes once the guest ejected the slot). QEMU q35: `device_add
# virtio-blk-pci,iommu_platform=on` onto a PCIe root port next to a
# virtio-iommu, `device_del` until its DEVICE_DELETED event (QMP over a
# pipe chardev). Prints "BENCH <vmm> add <ms>" (request sent to the
# guest's block device appearing, its hp_seen line, polled every 0.2 s by
# the guest) and "BENCH <vmm> remove <ms>" (request sent to the removal
# done). resources/bench/hotplug.py takes medians.
# Needs an L1 image built with DMAVM_L1_WITH_QEMU=1.
# env: DMAVM (dmavm binary), GUEST (guest images), BENCH_RUNS (default 5)
: "${DMAVM:?}" "${GUEST:?}"
RUNS=${BENCH_RUNS:-5}
QEMU=/usr/bin/qemu-system-x86_64
[ -x $QEMU ] || { echo "bench-hotplug: no QEMU in this L1 (DMAVM_L1_WITH_QEMU=1)"; exit 1; }
APPEND="console=ttyS0 quiet panic=-1 dmavm.check=hotplug"
d=/tmp/bench-hotplug
rm -rf $d; mkdir -p $d
dd if=/dev/urandom of=$d/t.img bs=1048576 count=8 2>/dev/null
log=$d/console.log
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
# wait_for FILE PATTERN COUNT: until COUNT lines of FILE match (at most 60 s)
wait_for() {
  i=0
  until [ "$(grep -c "$2" "$1")" -ge "$3" ] || [ $i -ge 3000 ]; do i=$((i + 1)); sleep 0.02; done
  [ "$(grep -c "$2" "$1")" -ge "$3" ]
}

dmavm_vm() {
  : > $log
  sock=$d/api.sock
  "$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --cpus 1 --memory 256M \
    --cmdline "$APPEND" --iommu --pci-bridge id=hpt,hotplug=on --api-socket $sock > $log 2>&1 &
  vm=$!
  wait_for $log '^DMAVM hp_ready=1' 1 || { echo "bench-hotplug: dmavm guest not ready"; tail -n 20 $log; }
  n=0
  while [ $n -lt "$RUNS" ]; do
    n=$((n + 1))
    t0=$(ms)
    "$DMAVM" ctl --socket $sock add-device disk "path=$d/t.img,id=t,transport=pci,bridge=hpt" > /dev/null \
      || echo "bench-hotplug: dmavm add failed"
    wait_for $log '^DMAVM hp_seen=t' $n && echo "BENCH dmavm add $(( $(ms) - t0 ))"
    wait_for $log '^DMAVM hp_add=t' $n
    t0=$(ms)
    "$DMAVM" ctl --socket $sock remove-device t > /dev/null && echo "BENCH dmavm remove $(( $(ms) - t0 ))"
    wait_for $log '^DMAVM hp_gone=t' $n
  done
  "$DMAVM" ctl --socket $sock quit > /dev/null
  wait $vm
}

qemu_vm() {
  : > $log
  rm -f $d/qmp.in $d/qmp.out; mkfifo $d/qmp.in $d/qmp.out
  $QEMU -enable-kvm -M q35 -cpu host -m 256M -smp 1 -nodefaults -no-user-config -display none \
    -serial file:$log -no-reboot -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initramfs.cpio.gz" \
    -append "$APPEND" -device virtio-iommu-pci -device pcie-root-port,id=rp1,chassis=1 \
    -chardev pipe,id=qmp,path=$d/qmp -mon chardev=qmp,mode=control 2>$d/qemu.err &
  vm=$!
  cat $d/qmp.out > $d/qmp.log &
  exec 3> $d/qmp.in
  echo '{"execute": "qmp_capabilities"}' >&3
  wait_for $log '^DMAVM hp_ready=1' 1 || { echo "bench-hotplug: QEMU guest not ready"; tail -n 20 $log; cat $d/qemu.err; }
  n=0
  while [ $n -lt "$RUNS" ]; do
    n=$((n + 1))
    echo "{\"execute\": \"blockdev-add\", \"arguments\": {\"node-name\": \"t$n\", \"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"$d/t.img\"}}}" >&3
    t0=$(ms)
    echo "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", \"id\": \"t\", \"drive\": \"t$n\", \"bus\": \"rp1\", \"serial\": \"t\", \"iommu_platform\": true, \"disable-legacy\": \"on\"}}" >&3
    wait_for $log '^DMAVM hp_seen=t' $n && echo "BENCH qemu add $(( $(ms) - t0 ))"
    wait_for $log '^DMAVM hp_add=t' $n
    t0=$(ms)
    echo '{"execute": "device_del", "arguments": {"id": "t"}}' >&3
    wait_for $d/qmp.log '"DEVICE_DELETED".*"device": "t"' $n && echo "BENCH qemu remove $(( $(ms) - t0 ))"
    wait_for $log '^DMAVM hp_gone=t' $n
    echo "{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"t$n\"}}" >&3
  done
  echo '{"execute": "quit"}' >&3
  exec 3>&-
  wait $vm
  grep -m 3 '"error"' $d/qmp.log
}

for pass in 1 2; do
  dmavm_vm
  qemu_vm
done
rm -rf $d
