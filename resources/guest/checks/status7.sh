#!/bin/sh
# status7.sh - a check that fails with a chosen status: /init must hand 7 to
# dmavm through the exit device, and dmavm must exit with 7.
echo "DMAVM chosen_status=7"
exit 7
