#!/bin/sh
# poweroff.sh - power the guest off through ACPI (S5 via the FADT sleep
# registers); dmavm must then exit 0. Returning at all is a failure.
echo "DMAVM poweroff=requested"
poweroff -f
sleep 5
echo "DMAVM poweroff=returned"
exit 42
