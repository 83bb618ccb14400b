#!/bin/sh
# net-iommu-mmio.sh - the net scenario (net-lib.sh) with the device on
# virtio-mmio translated by the virtio-iommu (a VIOT MMIO endpoint), the
# guest unmapping every buffer at once (iommu.strict=1).
# env: DMAVM (dmavm binary), GUEST (guest images)
# l1-cpus: 2 (L1 answers the guest's traffic beside running it: see tests/src/sandbox.rs)
: "${DMAVM:?}" "${GUEST:?}"
. "$(dirname "$0")/linux-lib.sh"
. "$(dirname "$0")/net-lib.sh"
in_netns "$0"
# 4 MiB each way, not net-lib's 64: strict invalidation stalled once
# (status 124 after 300 s, 2026-12-06, cause not found) where the same
# scenario alone moved 64 MiB in 79 s; see net-lib.sh.
EXTRA_CMDLINE="iommu.strict=1" NET_MIB=${NET_MIB:-4} net_scenario ",transport=mmio" --iommu
