#!/bin/sh
# bridges.sh - the PCI functions the guest enumerated, as
# `DMAVM pci_devices=ssss:bb:dd.f,...` (segment first, so several host
# bridges show as several segments), then the virtio check (virtio.sh),
# which exercises the disks, prints each virtio device's parent, iommu
# group and features, and ends the VM.
echo "DMAVM pci_devices=$(ls /sys/bus/pci/devices | tr '\n' ',' | sed 's/,$//')"
exec sh /checks/virtio.sh
