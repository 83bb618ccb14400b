#!/bin/sh
# arm64-bench-boot.sh - Linux boot to init, dmavm against QEMU, in the arm64
# sandbox: the same Debian arm64 Image and test initramfs (check boot: init
# reached, power off at once), 1 vCPU, 256 MiB, quiet console, each VMM
# $BENCH_RUNS times (default 5), alternating, timed from L1 (process start
# to exit). QEMU is Debian's arm64 qemu-system-aarch64 7.2 (fetch-qemu.sh)
# as `-M virt,gic-version=3 -cpu host -enable-kvm` with its PL011 console.
# Prints `DMAVM bench_dmavm_ms=a,b,c bench_qemu_ms=...` and the medians.
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
Q=/qemu
[ -x $Q/bin/qemu-system-aarch64 ] || { echo "arm64-bench-boot: no QEMU in L1 (run resources/testbed-arm64/fetch-qemu.sh)"; exit 1; }
args="quiet panic=-1 dmavm.check=boot"
now() { read -r u _ < /proc/uptime; echo "$u"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
median() { tr ',' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
d=; q=
for i in $(seq "${BENCH_RUNS:-5}"); do
  t0=$(now)
  "$DMAVM" run --kernel "$GUEST/Image" --initrd "$GUEST/initramfs.cpio.gz" --cpus 1 --memory 256M \
    --cmdline "console=ttyS0 $args" > /tmp/bench-dmavm.log 2>&1
  st=$?; t1=$(now)
  grep -q 'DMAVM check=boot status=0' /tmp/bench-dmavm.log && [ $st = 0 ] || { echo "dmavm run $i failed ($st)"; tail -5 /tmp/bench-dmavm.log; exit 1; }
  d="$d${d:+,}$(ms "$t0" "$t1")"
  t0=$(now)
  $Q/lib/ld-linux-aarch64.so.1 --library-path $Q/lib $Q/bin/qemu-system-aarch64 \
    -M virt,gic-version=3 -cpu host -enable-kvm -m 256M -smp 1 -nodefaults -no-user-config \
    -display none -serial stdio -kernel "$GUEST/Image" -initrd "$GUEST/initramfs.cpio.gz" \
    -append "console=ttyAMA0 $args" < /dev/null > /tmp/bench-qemu.log 2>&1
  st=$?; t1=$(now)
  grep -q 'DMAVM check=boot status=0' /tmp/bench-qemu.log && [ $st = 0 ] || { echo "qemu run $i failed ($st)"; tail -5 /tmp/bench-qemu.log; exit 1; }
  q="$q${q:+,}$(ms "$t0" "$t1")"
  echo "bench: run $i dmavm ${d##*,} ms, qemu ${q##*,} ms"
done
dm=$(echo "$d" | median); qm=$(echo "$q" | median)
echo "DMAVM bench_dmavm_ms=$d bench_qemu_ms=$q"
echo "DMAVM bench_dmavm_median_ms=$dm bench_qemu_median_ms=$qm ratio=$(awk -v a="$dm" -v b="$qm" 'BEGIN { printf "%.2f", b / a }')"
