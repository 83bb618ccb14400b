#!/bin/sh
# hvc.sh - the virtio console: write a line to /dev/hvc0 (the host sees it
# on dmavm's stdout) and read the line the host typed into dmavm's stdin.
# hvc0 stays open throughout: closing a tty drops input it has buffered.
[ -c /dev/hvc0 ] || { echo "DMAVM hvc=missing"; exit 1; }
exec 3<>/dev/hvc0
# No echo: the echoed line would land on dmavm's stdout in the middle of
# the UART's lines.
stty -echo <&3
echo "hvc-hello-from-guest" >&3
line=
read -r -t 20 line <&3
echo "DMAVM hvc_read=$line"
[ "$line" = "ping-from-host" ]
