//! PCI host bridges as DMA domains: each bridge is a PCI segment of its own
//! and carries the DMA contract's two properties for everything below it
//! (docs/architecture.md, "The DMA contract"). This file turns `--pci-bridge` options
//! into bridges and resolves a device's coherency and IOMMU scope against
//! its bridge; the combinations the firmware tables could not declare
//! truthfully are the checks' to report (`crate::checks`).

use crate::arch::Arch;
use crate::dma::{DmaPool, PoolOwner};
use crate::error::{fail, Result};
use crate::layout::{PciSegmentWindows, MAX_PCI_SEGMENTS};
use crate::options::{AttachOptions, BridgeOptions, Transport, DEFAULT_BRIDGE};

/// A PCI host bridge and the segment below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciBridge {
    /// Its name (`bridge=NAME` on devices); the first is `pci0`.
    pub id: String,
    /// Its PCI segment group (`_SEG`), its position on the command line
    /// (`pci0` is always segment 0).
    pub segment: u16,
    /// `_CCA` on the root: the declared coherency of every device below.
    pub coherent: bool,
    /// Whether devices below it bypass the IOMMU unless they say otherwise;
    /// a bypassing bridge has no VIOT range at all.
    pub direct_ram_access: bool,
    /// Reserved for hot-plug: its IOMMU scope is all or nothing.
    pub hotplug: bool,
    /// The restricted DMA pool of every function below it without a pool
    /// of its own (`dma-pool=`), placed by the machine (base 0 until
    /// then).
    pub dma_pool: Option<DmaPool>,
}

impl PciBridge {
    /// The bridge every machine has: segment 0, coherent, translated.
    pub fn default_root() -> Self {
        Self {
            id: DEFAULT_BRIDGE.into(),
            segment: 0,
            coherent: true,
            direct_ram_access: false,
            hotplug: false,
            dma_pool: None,
        }
    }

    fn from_options(options: &BridgeOptions, segment: u16) -> Self {
        Self {
            id: options.id.clone(),
            segment,
            coherent: options.coherent,
            direct_ram_access: options.direct_ram_access,
            hotplug: options.hotplug,
            dma_pool: options.dma_pool.map(|size| DmaPool { base: 0, size, owner: PoolOwner::Bridge }),
        }
    }

    /// Where its segment decodes in `arch`'s map, for `memory` bytes of
    /// RAM.
    pub fn windows(&self, arch: Arch, memory: u64) -> Result<PciSegmentWindows> {
        match arch.pci_segment_windows(self.segment, memory) {
            Some(w) => Ok(w),
            None => fail!(
                Layout,
                "{}: PCI segment {} has no place in the {arch} address map",
                self.id,
                self.segment
            ),
        }
    }
}

/// The bridges of `--pci-bridge` options, in segment order: `pci0` (with
/// its options if given) first, then the others in command-line order.
pub(crate) fn bridges(options: &[BridgeOptions]) -> Result<Vec<PciBridge>> {
    let mut bridges = vec![PciBridge::default_root()];
    let mut root_given = false;
    for o in options {
        let taken = if o.id == DEFAULT_BRIDGE {
            std::mem::replace(&mut root_given, true)
        } else {
            bridges.iter().any(|b| b.id == o.id)
        };
        if taken {
            fail!(
                Placement,
                "--pci-bridge id={} is given twice: each host bridge needs a name of its own",
                o.id
            );
        }
        if o.id == DEFAULT_BRIDGE {
            bridges[0] = PciBridge::from_options(o, 0);
            continue;
        }
        let segment = u16::try_from(bridges.len()).unwrap_or(u16::MAX);
        if segment >= MAX_PCI_SEGMENTS {
            fail!(
                Placement,
                "--pci-bridge id={}: too many PCI host bridges (at most {MAX_PCI_SEGMENTS}, {DEFAULT_BRIDGE} \
                 included: segments 0-{})",
                o.id,
                MAX_PCI_SEGMENTS - 1
            );
        }
        bridges.push(PciBridge::from_options(o, segment));
    }
    Ok(bridges)
}

/// A device's DMA properties, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dma {
    /// Declared coherency.
    pub coherent: bool,
    /// Whether it bypasses the IOMMU.
    pub direct_ram_access: bool,
}

/// The bridge a PCI device named `id` asks for (`bridge=NAME`, default the
/// first).
pub(crate) fn bridge_of<'a>(
    bridges: &'a [PciBridge],
    id: &str,
    attach: &AttachOptions,
) -> Result<&'a PciBridge> {
    let Some(name) = &attach.bridge else {
        // `bridges()` always puts pci0 first.
        return bridges.first().ok_or_else(|| {
            crate::MachineError::Placement(format!("{id}: the machine has no PCI host bridge"))
        });
    };
    if let Some(b) = bridges.iter().find(|b| &b.id == name) {
        return Ok(b);
    }
    let known: Vec<&str> = bridges.iter().map(|b| b.id.as_str()).collect();
    fail!(
        Placement,
        "{id}: bridge={name}: no such PCI host bridge (known: {}; add one with --pci-bridge id={name})",
        known.join(", ")
    )
}

/// The DMA properties of a virtio-mmio device: what it says, else
/// coherent and translated (the contract's defaults).
pub(crate) fn resolve_mmio(id: &str, attach: &AttachOptions) -> Result<Dma> {
    if let Some(name) = &attach.bridge {
        fail!(
            Placement,
            "{id}: bridge={name} needs transport=pci: a virtio-mmio device sits on no PCI host bridge"
        );
    }
    Ok(Dma {
        coherent: attach.coherent.unwrap_or(true),
        direct_ram_access: attach.direct_ram_access.unwrap_or(false),
    })
}

/// The DMA properties of a PCI device on `bridge`: what the device asks
/// for, else what the bridge declares. Asking for what the firmware
/// tables cannot declare (another coherency than the bridge's, a
/// translated device on a bypassing bridge, a bypassing device on a
/// translated hot-pluggable one) is kept as asked: [`crate::checks`]
/// reports each with its code and why.
///
/// The virtio-iommu reaches memory directly unless it asks otherwise.
pub(crate) fn resolve_pci(attach: &AttachOptions, bridge: &PciBridge, is_iommu: bool) -> Dma {
    debug_assert_eq!(attach.transport, Transport::Pci);
    let default_bypass = is_iommu || bridge.direct_ram_access;
    Dma {
        coherent: attach.coherent.unwrap_or(bridge.coherent),
        direct_ram_access: attach.direct_ram_access.unwrap_or(default_bypass),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{parse_bridge, parse_disk};

    fn opts(list: &[&str]) -> Vec<BridgeOptions> {
        list.iter().map(|t| parse_bridge(t).unwrap()).collect()
    }

    #[test]
    fn segments_follow_the_command_line_and_pci0_is_always_first() {
        let b = bridges(&opts(&["id=fast,direct-ram-access=on", "id=pci0,coherent=off", "id=hp,hotplug=on"]))
            .unwrap();
        let ids: Vec<(&str, u16)> = b.iter().map(|b| (b.id.as_str(), b.segment)).collect();
        assert_eq!(ids, [("pci0", 0), ("fast", 1), ("hp", 2)]);
        assert!(!b[0].coherent && !b[0].direct_ram_access);
        assert!(b[1].coherent && b[1].direct_ram_access);
        assert!(b[2].hotplug);
        assert_eq!(bridges(&[]).unwrap(), [PciBridge::default_root()]);
    }

    #[test]
    fn bridge_errors() {
        for (list, needle) in [
            (&["id=a", "id=a"][..], "--pci-bridge id=a is given twice"),
            (&["id=pci0", "id=pci0,coherent=off"], "--pci-bridge id=pci0 is given twice"),
        ] {
            let err = bridges(&opts(list)).unwrap_err().to_string();
            assert!(err.contains(needle), "{list:?}: {err}");
        }
        let many: Vec<String> = (1..=16).map(|i| format!("id=b{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = bridges(&opts(&many)).unwrap_err().to_string();
        assert!(err.contains("--pci-bridge id=b16: too many PCI host bridges (at most 16"), "{err}");
        assert_eq!(bridges(&opts(&many[..15])).unwrap().len(), 16);
    }

    fn pci(text: &str) -> AttachOptions {
        parse_disk(&format!("path=x,transport=pci,{text}")).unwrap().attach
    }

    fn bridge(text: &str) -> PciBridge {
        PciBridge::from_options(&parse_bridge(text).unwrap(), 1)
    }

    #[test]
    fn devices_inherit_what_they_leave_out() {
        let bypass = bridge("id=b,direct-ram-access=on,coherent=off");
        assert_eq!(resolve_pci(&pci(""), &bypass, false), Dma { coherent: false, direct_ram_access: true });
        let translated = bridge("id=t");
        assert_eq!(
            resolve_pci(&pci(""), &translated, false),
            Dma { coherent: true, direct_ram_access: false }
        );
        assert_eq!(
            resolve_pci(&pci("direct-ram-access=on"), &translated, false),
            Dma { coherent: true, direct_ram_access: true }
        );
        // What the tables cannot declare is kept as asked, for the checks.
        assert_eq!(
            resolve_pci(&pci("coherent=on,direct-ram-access=off"), &bypass, false),
            Dma { coherent: true, direct_ram_access: false }
        );
        // The IOMMU bypasses itself anywhere unless it asks otherwise, and
        // takes its bridge's coherency.
        for b in [&bypass, &translated, &bridge("id=h,hotplug=on")] {
            let dma = resolve_pci(&pci(""), b, true);
            assert_eq!(dma, Dma { coherent: b.coherent, direct_ram_access: true });
        }
        assert!(!resolve_pci(&pci("direct-ram-access=off"), &translated, true).direct_ram_access);
        assert_eq!(
            resolve_mmio("m", &parse_disk("path=x").unwrap().attach).unwrap(),
            Dma { coherent: true, direct_ram_access: false }
        );
    }

    #[test]
    fn bridge_and_transport_errors() {
        let err = resolve_mmio("m", &parse_disk("path=x,bridge=b").unwrap().attach).unwrap_err().to_string();
        assert!(err.contains("m: bridge=b needs transport=pci"), "{err}");
        let all = [PciBridge::default_root(), bridge("id=fast")];
        let err = bridge_of(&all, "d", &pci("bridge=slow")).unwrap_err().to_string();
        assert!(err.contains("d: bridge=slow: no such PCI host bridge (known: pci0, fast"), "{err}");
        assert_eq!(bridge_of(&all, "d", &pci("")).unwrap().id, "pci0");
        assert_eq!(bridge_of(&all, "d", &pci("bridge=fast")).unwrap().id, "fast");
    }
}
