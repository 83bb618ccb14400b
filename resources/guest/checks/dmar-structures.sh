#!/bin/sh
# dmar-structures.sh - prints the DMAR as the guest read it, for the checks
# that compare it with the machine (vtd.sh, boot-test.sh): one
# SEGMENT[SCOPE,...] per DRHD, `;`-separated, SCOPE `bb:dd.f` or `all`
# (INCLUDE_PCI_ALL); `typeN` for other structures; `none` without a DMAR.
# VT-d 4.1 8.1: the remapping structures start at byte 48, each a u16 type
# and u16 length; 8.3: a DRHD (type 0) has its flags at +4, its segment at
# +6 and device scopes from +16; 8.3.1: a scope is u8 type, u8 length,
# start bus at +5, then (device, function) pairs.
dmar=/sys/firmware/acpi/tables/DMAR
[ -r $dmar ] || { echo none; exit 0; }
od -A n -t u1 -v $dmar | awk '
  { for (i = 1; i <= NF; i++) b[n++] = $i }
  function u16(at) { return b[at] + 256 * b[at + 1] }
  END {
    out = ""
    for (at = 48; at + 4 <= n; at += len) {
      len = u16(at + 2)
      if (len < 4) { out = out ";badlength"; break }
      if (u16(at) != 0) { out = out ";type" u16(at); continue }
      scope = ""
      if (b[at + 4] % 2 == 1) scope = "all"
      for (s = at + 16; s + 8 <= at + len; s += slen) {
        slen = b[s + 1]
        if (slen < 8) { scope = scope ",badscope"; break }
        scope = scope sprintf(",%02x:%02x.%d", b[s + 5], b[s + 6], b[s + 7])
      }
      sub(/^,/, "", scope)
      out = out sprintf(";%04x[%s]", u16(at + 6), scope)
    }
    sub(/^;/, "", out)
    print out
  }'
