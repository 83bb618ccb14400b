#!/bin/sh
# hotplug.sh - PCI hot-plug through the control socket on a machine with an
# empty translated hotplug=on bridge (hpt, behind the virtio-iommu) and an
# empty bypassed one (hpb, direct-ram-access=on): two rounds of plugging a
# disk into each (8 MiB of random data, ids t and b) and removing both,
# then the ACPI power button (`shutdown`), after which the guest powers
# off. The guest (check hotplug.sh) reports each disk it sees appear, with
# its iommu group, negotiated ACCESS_PLATFORM and checksum, and each that
# leaves. Reports per round R (1, 2) and disk D (t, b): the add and remove
# replies' status, what the guest saw (rR_D_group, rR_D_platform,
# rR_D_sha_ok, rR_D_gone), milliseconds from add-device to the guest's
# checksum and from remove-device to its reply, the disk's translation
# counter after each round's read (stats), dmavm's exit status and its log.
# Then a console plugged into the translated bridge takes dmavm's stdin
# (a FIFO here) from the UART and gives it back once removed: hvc_* (the
# add's status, the guest's view of the function, the line each way),
# hvc_remove_status, hvc_gone, uart_read (a line typed after the removal,
# read by the guest on ttyS0).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
d=/tmp/hotplug
rm -rf $d; mkdir -p $d
for disk in t b; do dd if=/dev/urandom of=$d/$disk.img bs=1048576 count=8 2>/dev/null; done
sock=$d/api.sock
log=$d/boot.log
# dmavm's stdin: the terminal it gives the guest's consoles
mkfifo $d/stdin
"$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --cpus 2 --memory 256M \
  --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=hotplug" \
  --iommu --pci-bridge id=hpt,hotplug=on --pci-bridge id=hpb,hotplug=on,direct-ram-access=on \
  --api-socket $sock < $d/stdin > $log 2> $d/stderr.log &
vm=$!
exec 4> $d/stdin

ctl() { "$DMAVM" ctl --socket $sock "$@"; }
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
# wait_line PATTERN COUNT: until COUNT lines of the log match (at most 60 s)
wait_line() {
  i=0
  until [ "$(grep -c "$1" $log)" -ge "$2" ] || [ $i -ge 600 ] || ! kill -0 $vm 2>/dev/null; do
    i=$((i + 1)); sleep 0.1
  done
  [ "$(grep -c "$1" $log)" -ge "$2" ]
}
# field LINE KEY: the value of KEY= in LINE (serial lines end in CR)
field() { echo "$1" | tr -d '\r' | tr ' ' '\n' | sed -n "s/^$2=//p"; }
translations() { ctl stats | tr -d ' \n' | sed -n "s/.*\"device\":\"$1\"[^}]*\"translations\":\([0-9]*\).*/\1/p"; }

wait_line '^DMAVM hp_ready=1' 1 || { echo "DMAVM error=guest_not_ready"; tail -n 20 $log; }
for round in 1 2; do
  for disk in t b; do
    bridge=hp$disk
    t0=$(ms)
    ctl add-device disk "path=$d/$disk.img,id=$disk,transport=pci,bridge=$bridge" > $d/add.json 2>&1
    echo "DMAVM r${round}_${disk}_add_status=$? r${round}_${disk}_add_translated=$(sed -n 's/.*"translated": \([a-z]*\).*/\1/p' $d/add.json)"
    # Before the guest can have read the disk whole (seconds under nesting):
    # what its endpoint counted so far.
    [ $disk = t ] && echo "DMAVM r${round}_t_translations_at_add=$(translations t)"
    if wait_line "^DMAVM hp_add=$disk " $round; then
      echo "DMAVM r${round}_${disk}_usable_ms=$(( $(ms) - t0 ))"
      line=$(grep "^DMAVM hp_add=$disk " $log | tail -n 1)
      sha_ok=0
      [ "$(field "$line" sha)" = "$(sha256sum $d/$disk.img | cut -d' ' -f1)" ] && sha_ok=1
      echo "DMAVM r${round}_${disk}_group=$(field "$line" group) r${round}_${disk}_platform=$(field "$line" platform)" \
        "r${round}_${disk}_sha_ok=$sha_ok r${round}_${disk}_pci=$(field "$line" pci)"
    else
      echo "DMAVM error=r${round}_${disk}_not_seen"; head -n 3 $d/add.json
    fi
  done
  echo "DMAVM r${round}_t_translations=$(translations t)"
  for disk in t b; do
    t0=$(ms)
    ctl remove-device "$disk" > $d/remove.json 2>&1
    echo "DMAVM r${round}_${disk}_remove_status=$? r${round}_${disk}_remove_ms=$(( $(ms) - t0 ))"
    head -n 3 $d/remove.json | grep -i error
    gone=0
    wait_line "^DMAVM hp_gone=$disk" $round && gone=1
    echo "DMAVM r${round}_${disk}_gone=$gone"
  done
  echo "DMAVM r${round}_stats_devices=$(ctl stats | grep -c '"device"')"
done
ctl add-device console "transport=pci,bridge=hpt" > $d/add.json 2>&1
echo "DMAVM hvc_add_status=$? hvc_add_translated=$(sed -n 's/.*"translated": \([a-z]*\).*/\1/p' $d/add.json)"
if wait_line '^DMAVM hp_console=' 1; then
  line=$(grep '^DMAVM hp_console=' $log | tail -n 1)
  echo "DMAVM hvc_group=$(field "$line" group) hvc_platform=$(field "$line" platform) hvc_pci=$(field "$line" pci)"
  # The guest's line on dmavm's stdout, then a line typed for it.
  wait_line 'hvc-hello-hotplug' 1 && printf 'typed-into-hvc\n' >&4
  wait_line '^DMAVM hp_console_read=' 1
  echo "DMAVM hvc_host_saw_guest=$(grep -c 'hvc-hello-hotplug' $log)"
  echo "DMAVM hvc_read=$(field "$(grep '^DMAVM hp_console_read=' $log | tail -n 1)" hp_console_read)"
  # the guest's account when its console never answered
  grep -E '^DMAVM hp_console_(driver|nodes)=|^hp_console_dmesg:' $log | tr -d '\r' | head -n 8
else
  echo "DMAVM error=hvc_not_seen"; head -n 3 $d/add.json
fi
ctl remove-device console0 > $d/remove.json 2>&1
echo "DMAVM hvc_remove_status=$?"
head -n 3 $d/remove.json | grep -i error
gone=0
wait_line '^DMAVM hp_gone=console' 1 && gone=1
echo "DMAVM hvc_gone=$gone"
wait_line 'uart-hello-hotplug' 1 && printf 'typed-into-uart\n' >&4
wait_line '^DMAVM hp_uart_read=' 1
echo "DMAVM uart_read=$(field "$(grep '^DMAVM hp_uart_read=' $log | tail -n 1)" hp_uart_read)"
echo "DMAVM dmesg_bad=$(grep '^DMAVM hp_dmesg_bad=' $log | tail -n 1 | tr -d '\r' | sed 's/.*=//')"
unknown=$(ctl remove-device nope 2>&1); echo "DMAVM remove_unknown_status=$? remove_unknown=$(echo "$unknown" | cut -c1-30 | tr ' ' _)"
ctl shutdown > /dev/null; echo "DMAVM shutdown_status=$?"
i=0
while kill -0 $vm 2>/dev/null && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
kill -0 $vm 2>/dev/null && { echo "DMAVM error=no_power_off"; ctl quit > /dev/null; }
wait $vm
status=$?
exec 4>&-
# dmavm's own lines after the guest's, not inside them
cat $d/stderr.log >> $log
echo "DMAVM power_button_seen=$(grep -c '^DMAVM power_button=pressed' $log)"
grep -E 'dmavm: |WARNING:|BUG:|Oops|Kernel panic|hp_error|hp_dmesg' $log | head -n 20
echo "DMAVM vmm_status=$status"
rm -rf $d
