#!/bin/sh
# arm64-net-pci.sh - virtio-net on arm64, a PCI function translated by a
# virtio-iommu on PCI (iommu-map in the device tree, MSI-X through the ITS),
# the guest's default (lazy) invalidation: its TAP in a network namespace of
# L1, the net check (net-lib.sh) with NET_MIB (default here 1: the arm64 L1
# is emulated, and the translated path maps every buffer).
# env: DMAVM (dmavm binary), GUEST (guest images)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/arm64-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
NET_MIB=${NET_MIB:-1} net_scenario ",transport=pci" --iommu transport=pci
