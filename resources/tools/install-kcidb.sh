#!/usr/bin/env bash
# install-kcidb.sh - KernelCI's KCIDB I/O schema for the boot-test tests, in
# build/tools: the `kcidb-io` package (which ships the published schema and
# its validator) in a Python venv at build/tools/kcidb.
#
# kcidb-io 141 is the newest release as of 2026-12; its newest schema
# (kcidb_io.schema.LATEST) is 5.3, the version `dmavm boot-test --kcidb`
# writes. The tests check a submission with
#   build/tools/kcidb/bin/python3 -c 'import json, sys, kcidb_io;
#     kcidb_io.schema.V5_3.validate_exactly(json.load(open(sys.argv[1])))' FILE
# jsonschema's format checkers (the `format` extra) are pinned with it, so
# that URIs and timestamps are checked as well.
# Idempotent: does nothing when the stamp file matches the versions below;
# concurrent runs wait for each other (flock on build/tools/.install-kcidb.lock).
# usage: resources/tools/install-kcidb.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tools=$root/build/tools
venv=$tools/kcidb
stamp=$venv/.installed
die() { echo "install-kcidb.sh: error: $*" >&2; exit 1; }

PIP_PACKAGES=(kcidb-io==141 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
              referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 typing_extensions==4.16.0
              rfc3339-validator==0.1.4 rfc3987==1.3.8 fqdn==1.6.0 idna==3.21
              isoduration==20.11.0 arrow==1.4.0 python-dateutil==4.0.0 six==1.17.0
              tzdata==2026.6 jsonpointer==3.12 uri-template==1.3.0 webcolors==25.10.0)
want="kcidb-io-141 schema-5.3"
installed() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python3" ]
}
installed && exit 0
mkdir -p "$tools"
exec 9>"$tools/.install-kcidb.lock"
flock 9
installed && exit 0

echo "install-kcidb.sh: kcidb-io venv in $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv" || die "python3 -m venv $venv failed"
"$venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" \
  || die "pip install ${PIP_PACKAGES[*]} failed"
got=$("$venv/bin/python3" -c 'import kcidb_io; v = kcidb_io.schema.LATEST; print(f"{v.major}.{v.minor}")') \
  || die "kcidb_io does not import"
[ "$got" = "5.3" ] || die "kcidb-io's newest schema is $got, not 5.3"
echo "$want" > "$stamp"
