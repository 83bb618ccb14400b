#!/usr/bin/env bash
# install-dtschema.sh - the device-tree schema checker for the fdt tests, in
# build/tools: dtschema's dt-validate in a Python venv, and Linux 6.12's
# binding schemas (Documentation/devicetree/bindings) compiled into one
# processed schema, exactly as the kernel's `make dtbs_check` does.
#
# The recipe (what dmavm-fdt's tests/dt_validate.rs then runs):
#   1. venv build/tools/dtschema with dtschema 2024.11 (the release current
#      when Linux 6.12 came out; the bindings ask for at least 2023.9) and
#      its dependencies pinned below.
#   2. `apt-get download linux-source-6.12` (Debian 12 carries it in
#      bookworm-security), and from its tarball extract only
#      Documentation/devicetree/bindings into build/tools/linux-6.12-bindings.
#      No kernel source goes anywhere else, and nothing of it into git.
#   3. `dt-doc-validate -u BINDINGS FILE...` on the bindings the tests rely
#      on: they must be valid schemas for this dtschema (the kernel's
#      dt_binding_check step, limited to those files).
#   4. `dt-mk-schema -j @LIST > processed-schema.json`, LIST being every
#      *.yaml under the bindings dir (the kernel's
#      Documentation/devicetree/bindings/Makefile, cmd_mk_schema).
#   5. The tests run `dt-validate -m -s processed-schema.json FILE.dtb`
#      (scripts/Makefile.lib, cmd_dtb_check, with -m as the kernel's
#      default DT_CHECKER_FLAGS) and fail on any line it prints: dt-validate
#      exits 0 even when it reports errors.
# Idempotent: does nothing when the stamp file matches the versions below;
# concurrent runs wait for each other (flock on build/tools/.install-dtschema.lock).
# usage: resources/tools/install-dtschema.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=$root/build/tools
venv=$tools/dtschema
bindings_root=$tools/linux-6.12-bindings
bindings=$bindings_root/Documentation/devicetree/bindings
schema=$bindings_root/processed-schema.json
stamp=$bindings_root/.installed
die() { echo "install-dtschema.sh: error: $*" >&2; exit 1; }

# dtschema and exactly the dependency versions it was checked with here.
PIP_PACKAGES=(dtschema==2024.11 jsonschema==4.17.3 pyrsistent==0.20.0 rfc3987==1.3.8
              ruamel.yaml==0.19.1 pylibfdt==1.7.2.post2 attrs==26.1.0)
want="dtschema-2024.11 linux-source-6.12 recipe-1"
installed() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/dt-validate" ] && [ -s "$schema" ]
}
installed && exit 0
# One install at a time: work trees of the project may share build/ (a symlink), and two
# runs would delete each other's files. The second waits, then finds the first's result.
mkdir -p "$tools"
exec 9>"$tools/.install-dtschema.lock"
flock 9
installed && exit 0
rm -f "$stamp"

echo "install-dtschema.sh: dtschema venv in $venv" >&2
python3 -m venv "$venv" || die "python3 -m venv $venv failed"
"$venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" \
  || die "pip install ${PIP_PACKAGES[*]} failed"
[ "$("$venv/bin/dt-validate" --version)" = "2024.11" ] || die "dt-validate is not version 2024.11"

echo "install-dtschema.sh: Linux 6.12 bindings in $bindings_root" >&2
dl=$tools/linux-source-dl
rm -rf "$dl" "$bindings_root"
mkdir -p "$dl" "$bindings_root"
# apt-get download runs as the _apt user where it can; a root-owned dir it
# cannot write just makes it warn and download unsandboxed.
if ! (cd "$dl" && apt-get download -q linux-source-6.12 >/dev/null 2>&1); then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
  (cd "$dl" && apt-get download -q linux-source-6.12 >/dev/null 2>&1) \
    || die "apt-get download linux-source-6.12 failed"
fi
debs=("$dl"/linux-source-6.12_*.deb)
deb=${debs[0]}
[ -f "$deb" ] || die "apt-get download left no linux-source-6.12 package in $dl"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dl" ./usr/src/linux-source-6.12.tar.xz \
  || die "$deb has no usr/src/linux-source-6.12.tar.xz"
tar -xJf "$dl/usr/src/linux-source-6.12.tar.xz" -C "$bindings_root" --strip-components=1 \
  linux-source-6.12/Documentation/devicetree/bindings || die "cannot extract the bindings"
basename "$deb" > "$bindings_root/SOURCE"
rm -rf "$dl"
[ -f "$bindings/virtio/mmio.yaml" ] || die "the extracted bindings lack virtio/mmio.yaml"

# The schemas dmavm's trees are checked against must be valid for this dtschema.
used=(virtio/mmio.yaml virtio/pci-iommu.yaml pci/host-generic-pci.yaml
      interrupt-controller/arm,gic-v3.yaml timer/arm,arch_timer.yaml arm/psci.yaml
      arm/cpus.yaml serial/pl011.yaml arm/primecell.yaml clock/fixed-clock.yaml)
(cd "$bindings" && "$venv/bin/dt-doc-validate" -u "$bindings" "${used[@]}") \
  || die "dt-doc-validate rejects one of: ${used[*]}"

echo "install-dtschema.sh: dt-mk-schema (about a minute)" >&2
list=$(mktemp)
find "$bindings" -name '*.yaml' ! -name 'processed-schema*' > "$list"
"$venv/bin/dt-mk-schema" -j "@$list" > "$schema.tmp" || { rm -f "$list"; die "dt-mk-schema failed"; }
rm -f "$list"
mv "$schema.tmp" "$schema"
echo "$want" > "$stamp"
