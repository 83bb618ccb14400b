#!/bin/sh
# reboot.sh - reboot the guest (ACPI reset register); dmavm must then exit
# with its documented reset status, 3. Returning at all is a failure.
echo "DMAVM reboot=requested"
reboot -f
sleep 5
echo "DMAVM reboot=returned"
exit 42
