#!/bin/sh
# control-socket.sh - a guest reading its translated PCI disk (rand, behind
# the virtio-iommu) in a loop while the host asks the VM's control socket
# (--api-socket) for `stats` 1000 times in a row on one connection
# (`dmavm ctl --count 1000`), then 100 times more, one `dmavm ctl` process
# and connection each (about 130 ms each in the nested test bed); then an
# add-device the checks refuse, pause, info, resume and quit.
# Reports: how many stats requests succeeded, the disk's translation
# counter before and after them and the guest's read passes meanwhile,
# the replies of the others, dmavm's exit status (quit: 0) and its log.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
d=/tmp/control-socket
rm -rf $d; mkdir -p $d
dd if=/dev/urandom of=$d/rand.img bs=1048576 count=8 2>/dev/null
sock=$d/api.sock
log=$d/boot.log
"$DMAVM" run --kernel "$GUEST/vmlinux" --initrd "$GUEST/initramfs.cpio.gz" --cpus 2 --memory 256M \
  --cmdline "console=ttyS0 quiet panic=-1 dmavm.check=ioloop" \
  --iommu --pci-bridge id=hpt,hotplug=on --disk "path=$d/rand.img,id=rand,transport=pci" \
  --api-socket $sock > $log 2>&1 &
vm=$!

ctl() { "$DMAVM" ctl --socket $sock "$@"; }
passes() { grep -c '^DMAVM io_pass=' $log; }
translations() { ctl stats | sed -n 's/.*"translations": \([0-9]*\).*/\1/p'; }

# The guest reads its disk before the requests start (at most 60 s).
# Serial lines end in CR LF: no `$` anchor.
i=0
until grep -q '^DMAVM io_pass=' $log || [ $i -ge 600 ] || ! kill -0 $vm 2>/dev/null; do
  i=$((i + 1)); sleep 0.1
done
if ! grep -q '^DMAVM io_pass=' $log; then
  echo "DMAVM error=no_guest_io"
  tail -n 20 $log
fi
echo "DMAVM socket_mode=$(stat -c %a $sock)"

passes_before=$(passes)
translations_before=$(translations)
t0=$(cut -d' ' -f1 /proc/uptime)
ctl --count 1000 stats > $d/stats.json 2>> $d/ctl.err
echo "DMAVM stats_sequence_status=$?"
ok=$(grep -c '"iommu": true' $d/stats.json)
n=0
while [ $n -lt 100 ]; do
  n=$((n + 1))
  ctl stats >> $d/stats.json 2>> $d/ctl.err && ok=$((ok + 1))
done
t1=$(cut -d' ' -f1 /proc/uptime)
echo "DMAVM stats_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
echo "DMAVM stats_rand_replies=$(grep -c '"device": "rand"' $d/stats.json)"
translations_after=$(translations)
passes_after=$(passes)
echo "DMAVM stats_ok=$ok"
echo "DMAVM translations_before=$translations_before translations_after=$translations_after"
echo "DMAVM passes_before=$passes_before passes_after=$passes_after"
head -n 3 $d/ctl.err 2>/dev/null

refused=$(ctl add-device disk "path=$d/rand.img,id=x,transport=pci,bridge=hpt,direct-ram-access=on" 2>&1)
echo "DMAVM add_refused_status=$? add_refused=$(echo "$refused" | cut -c1-40 | tr ' ' _)"
ctl pause > /dev/null; echo "DMAVM pause_status=$?"
p1=$(passes); sleep 1; p2=$(passes)
echo "DMAVM passes_while_paused=$((p2 - p1))"
echo "DMAVM info_state=$(ctl info | sed -n 's/^  "state": "\(.*\)".*/\1/p')"
ctl resume > /dev/null; echo "DMAVM resume_status=$?"
ctl quit > /dev/null; echo "DMAVM quit_status=$?"
wait $vm
status=$?
grep -E 'dmavm: |WARNING:|BUG:|Oops|Kernel panic' $log | head -n 20
echo "DMAVM vmm_status=$status"
rm -rf $d
