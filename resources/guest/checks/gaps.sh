#!/bin/sh
# gaps.sh - print kernel log lines that follow a pause of more than 0.2 s,
# to find boot stalls on absent hardware.
dmesg | awk -F'[][]' '{ t = $2 + 0; if (t - p > 0.2) printf "DMAVM gap=%.2f at=%.2f msg=%s\n", t - p, t, $3; p = t }'
