#!/bin/sh
# hvc.sh [DEVICE GREETING KEY] - a line each way through a console tty
# (default /dev/hvc0, the virtio console): write GREETING (default
# hvc-hello-from-guest) to DEVICE, which the host sees on dmavm's stdout,
# then read the line the host typed into dmavm's stdin and print
# "DMAVM KEY=LINE" (default key hvc_read). Succeeds when the line is
# ping-from-host. hotplug.sh runs it for the console it sees plugged in
# and for the UART after that console left.
# DEVICE stays open throughout: closing a tty drops input it has buffered.
dev=${1:-/dev/hvc0} greeting=${2:-hvc-hello-from-guest} key=${3:-hvc_read}
[ -c "$dev" ] || { echo "DMAVM $key=missing"; exit 1; }
exec 3<>"$dev"
# No echo: the echoed line would land on dmavm's stdout in the middle of
# the UART's lines.
stty -echo <&3
echo "$greeting" >&3
line=
read -r -t 30 line <&3
echo "DMAVM $key=$line"
[ "$line" = "ping-from-host" ]
