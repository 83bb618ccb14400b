#!/bin/bash
# setup.sh - install the Debian packages dmavm's build, guest image recipe and
# test bed need (busybox for guest initramfs images, compressors, ACPI/DT
# tools, binutils, hyperfine).
# Idempotent: does nothing (no apt-get at all) when every package is present.
# Also installs a recent iasl in build/tools (resources/tools/install-iasl.sh):
# Debian 12's cannot decode the VIOT; and dtschema's dt-validate with Linux
# 6.12's device-tree bindings (resources/tools/install-dtschema.sh), which
# the fdt tests check the generated trees against; and the Firmware Test Suite
# (resources/tools/install-fwts.sh: only Debian unstable has fwts), which
# runs on the host's GLib and zlib, hence those libraries below; and dtc 1.8
# beside Debian 12's 1.6 (resources/tools/install-dtc.sh: only Debian unstable
# has 1.8), whose checks the device-tree tests also pass; and KernelCI's
# kcidb-io (resources/tools/install-kcidb.sh), whose schema the boot-test
# harness's --kcidb output is checked against. And Debian 13's QEMU
# (resources/testbed/fetch-qemu.sh: Debian 12's loses vCPU wakeups under
# nested SVM), which runs the x86 sandbox's emulated host and is the QEMU
# the benchmarks compare with inside it. And what the
# arm64 sandbox needs (resources/testbed-arm64/setup.sh): qemu-system-aarch64,
# the aarch64 cross gcc and libc, the Rust target aarch64-unknown-linux-gnu.
# usage: resources/setup.sh
set -euo pipefail

PACKAGES=(busybox-static cpio xz-utils zstd acpica-tools
          device-tree-compiler binutils hyperfine libglib2.0-0 zlib1g libyaml-0-2)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
here=$(cd "$(dirname "$0")" && pwd)
tools() {
  "$here/tools/install-iasl.sh"
  "$here/tools/install-dtschema.sh"
  "$here/tools/install-fwts.sh"
  "$here/tools/install-dtc.sh"
  "$here/tools/install-kcidb.sh"
  "$here/testbed/fetch-qemu.sh"
  "$here/testbed-arm64/setup.sh"
}
if [ ${#missing[@]} -eq 0 ]; then
  tools
  exit 0
fi

echo "setup.sh: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: error: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q || { echo "setup.sh: error: apt-get update failed" >&2; exit 1; }
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
  || { echo "setup.sh: error: apt-get install failed for: ${missing[*]}" >&2; exit 1; }
tools
