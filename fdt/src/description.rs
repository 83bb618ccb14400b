//! The plain description of an arm64 `virt`-style machine that the device tree is generated from.
//!
//! The VMM fills a [`Machine`] from its machine model (the same model that feeds the ACPI
//! tables, so the two can never disagree); nothing here knows about the blob. Every DMA
//! decision of the DMA contract (docs/architecture.md) is a plain field: `coherent` on each virtio-mmio
//! device and each PCI host bridge, [`VirtioMmioDevice::iommu_endpoint`] for a translated
//! virtio-mmio device and [`PciRoot::iommu`] for the requester IDs a host bridge's IOMMU
//! translates.

/// A guest-physical address range, `size` bytes from `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First address.
    pub base: u64,
    /// Length in bytes (never 0 where a range is required).
    pub size: u64,
}

impl MemoryRange {
    /// `size` bytes from `base`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last address, `None` if the range runs past the end of the address space.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// Everything the device tree describes about one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The root node's `model`.
    pub model: String,
    /// The MPIDR_EL1 of each vCPU, in vCPU order: `cpu@N` nodes with `reg` = its affinity fields
    /// (Aff3 in bits 39:32, Aff2-Aff0 in bits 23:0); the other bits (RES1 bit 31, U, MT) are
    /// ignored, so a value read from KVM can be given as it is. KVM's defaults are
    /// KVM's `reset_mpidr()`.
    pub cpus: Vec<u64>,
    /// Guest RAM, one `memory@` node per range; ranges must not overlap.
    pub memory: Vec<MemoryRange>,
    /// The interrupt controller, the `interrupt-parent` of the whole tree.
    pub gic: GicV3,
    /// The architected timer's interrupts.
    pub timer: ArchTimer,
    /// The console UART.
    pub uart: Uart,
    /// What `/chosen` tells the kernel.
    pub chosen: Chosen,
    /// virtio-mmio devices, in the order they appear in the tree (the virtio-iommu too, when it
    /// is on virtio-mmio: see [`VirtioIommu::Mmio`]).
    pub virtio_mmio: Vec<VirtioMmioDevice>,
    /// PCI Express host bridges (`pci-host-ecam-generic`), each its own PCI domain.
    pub pci_roots: Vec<PciRoot>,
    /// The virtio-iommu, `None` when the machine has none (then no device may be translated).
    pub iommu: Option<VirtioIommu>,
    /// Restricted DMA pools (`restricted-dma-pool` children of `/reserved-memory`,
    /// reserved-memory/shared-dma-pool.yaml), each inside RAM and apart from the others and the
    /// initrd. Devices name them by index ([`VirtioMmioDevice::dma_pool`],
    /// [`PciFunction::dma_pool`]) and get `memory-region` = the pool's phandle.
    pub dma_pools: Vec<MemoryRange>,
}

/// A GICv3 (`arm,gic-v3`) and its optional ITS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicV3 {
    /// The distributor (GICD), 64 KiB.
    pub distributor: MemoryRange,
    /// One contiguous redistributor region (GICR): 128 KiB (RD and SGI frames) per vCPU, so at
    /// least `cpus.len() * 0x20000` bytes.
    pub redistributors: MemoryRange,
    /// The ITS (`arm,gic-v3-its`) that translates PCI MSIs, 128 KiB. Required when the machine
    /// has PCI host bridges: their devices have no other interrupts (no INTx is described).
    pub its: Option<MemoryRange>,
}

/// The architected timer's PPIs (`arm,armv8-timer`), as PPI numbers (INTID - 16), all level
/// triggered, active high.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchTimer {
    /// Secure EL1 physical timer.
    pub secure_phys: u32,
    /// Non-secure EL1 physical timer.
    pub phys: u32,
    /// Virtual timer.
    pub virt: u32,
    /// Non-secure EL2 (hypervisor) physical timer.
    pub hyp_phys: u32,
}

impl Default for ArchTimer {
    /// The PPIs the Arm Base System Architecture recommends and KVM uses by default (INTIDs 29,
    /// 30, 27, 26).
    fn default() -> Self {
        Self { secure_phys: 13, phys: 14, virt: 11, hyp_phys: 10 }
    }
}

/// The console UART: the `stdout-path` of `/chosen` and `serial0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uart {
    /// An Arm PL011.
    Pl011(Pl011),
    /// A 16550A.
    Ns16550a(Ns16550a),
}

impl Uart {
    /// Its register window.
    pub fn region(&self) -> MemoryRange {
        match self {
            Uart::Pl011(u) => u.region,
            Uart::Ns16550a(u) => u.region,
        }
    }

    /// Its SPI number.
    pub fn spi(&self) -> u32 {
        match self {
            Uart::Pl011(u) => u.spi,
            Uart::Ns16550a(u) => u.spi,
        }
    }

    /// Its clock frequency in Hz.
    pub fn clock_hz(&self) -> u32 {
        match self {
            Uart::Pl011(u) => u.clock_hz,
            Uart::Ns16550a(u) => u.clock_hz,
        }
    }
}

/// A 16550A-compatible UART (`ns16550a`, serial/8250.yaml) with byte-wide
/// registers at consecutive addresses (the binding's defaults: `reg-shift`
/// 0, `reg-io-width` 1): what dmavm's arm64 back end emulates, with the same
/// model (vm-superio's) as COM1 on x86. Its interrupt is declared edge
/// triggered, rising: the model raises one edge per interrupt event, as on
/// an ISA line, rather than holding a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ns16550a {
    /// Its register window (at least the 8 registers).
    pub region: MemoryRange,
    /// SPI number (INTID - 32), edge triggered, rising.
    pub spi: u32,
    /// Its input clock (`clock-frequency`), which the 8250 driver requires.
    pub clock_hz: u32,
}

/// An Arm PL011 UART (`arm,pl011`, `arm,primecell`).
///
/// What QEMU's `virt` gives; for a VMM that emulates one. dmavm emulates a 16550A
/// ([`Ns16550a`]), the model it already has for x86's COM1 (Debian's arm64 kernels have both
/// drivers built in: `CONFIG_SERIAL_AMBA_PL011_CONSOLE=y`, `CONFIG_SERIAL_8250_CONSOLE=y` with
/// `CONFIG_SERIAL_OF_PLATFORM=y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pl011 {
    /// Its register window (4 KiB).
    pub region: MemoryRange,
    /// SPI number (INTID - 32), level triggered, active high.
    pub spi: u32,
    /// Frequency of the fixed clock that feeds both UARTCLK and APB PCLK, in Hz.
    pub clock_hz: u32,
}

/// What `/chosen` tells the kernel; `stdout-path` is always the UART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The kernel command line (`bootargs`).
    pub bootargs: String,
    /// Where the loaded initrd is (`linux,initrd-start`, `linux,initrd-end`), inside RAM.
    pub initrd: Option<MemoryRange>,
}

/// A virtio-mmio device (virtio 1.2 section 4.2, `virtio,mmio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    /// Its register window.
    pub region: MemoryRange,
    /// SPI number (INTID - 32), edge triggered (rising).
    pub spi: u32,
    /// Whether its DMA is cache-coherent: `dma-coherent` exactly when true.
    pub coherent: bool,
    /// `Some(endpoint ID)` when its DMA is translated by the virtio-iommu
    /// (`direct-ram-access=off`): `iommus = <&viommu ID>`. `None`: it bypasses the IOMMU (or
    /// there is none), no `iommus`. The virtio-iommu's own device must have `None`.
    pub iommu_endpoint: Option<u32>,
    /// `Some(index)` of [`Machine::dma_pools`]: the device's DMA is confined to that restricted
    /// pool, `memory-region` on its node (which Linux reads for any device node; the
    /// virtio/mmio.yaml binding of Linux 6.12 does not list it).
    pub dma_pool: Option<usize>,
}

/// A PCI Express host bridge (`pci-host-ecam-generic`) and the PCI domain below it.
///
/// The same fields as the ACPI crate's `PciRoot`, so the VMM gives both encoders the same
/// numbers, plus what a device tree needs besides: the ITS DeviceIDs of its functions and the
/// IOMMU scope as `iommu-map` ranges. There is no `interrupt-map`: like the ACPI side (no
/// `_PRT`), devices below a bridge must use MSI or MSI-X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciRoot {
    /// PCI domain (segment) number, `linux,pci-domain`; unique.
    pub segment: u16,
    /// First bus decoded (`bus-range`).
    pub bus_start: u8,
    /// Last bus decoded (at least `bus_start`).
    pub bus_end: u8,
    /// Guest-physical address of bus 0's configuration space, as in an MCFG entry: bus `b` is at
    /// `ecam_base + (b << 20)`. The node's `reg` covers buses `bus_start..=bus_end` only, from
    /// `ecam_base + (bus_start << 20)` (the binding's base is that of the first bus of
    /// `bus-range`); 1 MiB aligned.
    pub ecam_base: u64,
    /// The 32-bit non-prefetchable memory window, identity mapped (PCI address = CPU address),
    /// entirely below 4 GiB.
    pub mem32: MemoryRange,
    /// The 64-bit memory window, identity mapped; `None`: none.
    pub mem64: Option<MemoryRange>,
    /// An I/O port window: CPU addresses of PCI I/O ports `0..size` (at most 64 KiB); `None`:
    /// none (virtio-pci needs none).
    pub io: Option<MemoryRange>,
    /// ITS DeviceID of the bridge's first requester ID (`bus_start << 8`): `msi-map` sends RID
    /// `r` to DeviceID `its_device_base + r - (bus_start << 8)`. Bridges sharing the ITS need
    /// disjoint DeviceIDs.
    pub its_device_base: u32,
    /// Whether DMA of everything below the bridge is cache-coherent: `dma-coherent` on the
    /// bridge exactly when true.
    pub coherent: bool,
    /// Which requester IDs the virtio-iommu translates.
    pub iommu: PciIommuScope,
    /// Functions confined to a restricted DMA pool: a child node each (Linux gives a function
    /// the child of its bridge's node whose `reg` holds its devfn, `pci_set_of_node()`), with
    /// `memory-region`. Linux would also read `memory-region` from the bridge node itself for
    /// functions without a node (`of_dma_set_restricted_buffer()` in drivers/of/device.c), but
    /// the host bridge's binding (pci/host-generic-pci.yaml) does not allow the property, so a
    /// pool shared by a bridge's functions is named on each function's node.
    pub functions: Vec<PciFunction>,
}

/// A PCI function on a host bridge's first bus that has a node of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciFunction {
    /// Its requester ID, `bus << 8 | device << 3 | function`, on the bridge's first bus.
    pub bdf: u16,
    /// The index of its pool in [`Machine::dma_pools`].
    pub dma_pool: usize,
}

/// The requester IDs below a host bridge that the virtio-iommu translates: `iommu-map`
/// (Documentation/devicetree/bindings/pci/pci-iommu.txt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciIommuScope {
    /// The bridge has `direct-ram-access=on` (or there is no IOMMU): nothing below it is
    /// translated, and the bridge has no `iommu-map` at all.
    Bypass,
    /// Exactly the requester IDs of these ranges are translated, each range one `iommu-map`
    /// entry; requester IDs outside every range bypass the IOMMU (Linux then gives them no IOMMU).
    /// The ranges must lie within the bridge's bus range, must not overlap, and must not contain
    /// the virtio-iommu itself. An empty list means nothing is translated and is encoded as
    /// [`PciIommuScope::Bypass`] is, without `iommu-map`: Linux's `of_map_id()` rejects an
    /// empty map as malformed.
    Ranges(Vec<PciIommuRange>),
}

/// A run of requester IDs (`bus << 8 | device << 3 | function`) translated with consecutive
/// endpoint IDs: one `iommu-map` entry `<rid_start &viommu endpoint_start length>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIommuRange {
    /// First requester ID.
    pub rid_start: u16,
    /// Last requester ID (at least `rid_start`).
    pub rid_end: u16,
    /// Endpoint ID of `rid_start`; RID `r` is endpoint `endpoint_start + r - rid_start`.
    pub endpoint_start: u32,
}

impl PciIommuScope {
    /// Every requester ID of buses `bus_start..=bus_end` translated, with endpoint ID
    /// `endpoint_base + rid`, except the `bypass` ones (functions with `direct-ram-access=on`,
    /// and the virtio-iommu itself when it is below this bridge): the ranges split around them.
    pub fn all_except(bus_start: u8, bus_end: u8, endpoint_base: u32, bypass: &[u16]) -> Self {
        let first = u32::from(bus_start) << 8;
        let last = (u32::from(bus_end) << 8) | 0xff;
        let mut holes: Vec<u32> = bypass.iter().map(|&r| u32::from(r)).collect();
        holes.sort_unstable();
        holes.dedup();
        let mut ranges = Vec::new();
        let mut next = first;
        for hole in holes.into_iter().filter(|&h| (first..=last).contains(&h)).chain([last + 1]) {
            if hole > next {
                // Both ends are requester IDs of the bus range, so they fit 16 bits.
                ranges.push(PciIommuRange {
                    rid_start: next as u16,
                    rid_end: (hole - 1) as u16,
                    endpoint_start: endpoint_base.wrapping_add(next),
                });
            }
            next = hole + 1;
        }
        PciIommuScope::Ranges(ranges)
    }
}

/// Where the virtio-iommu is. Its node carries `#iommu-cells = <1>` (the endpoint ID) and is the
/// target of every `iommus` and `iommu-map`; it is never in its own scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioIommu {
    /// A virtio-mmio device: the one of [`Machine::virtio_mmio`] whose window starts at `base`
    /// (Documentation/devicetree/bindings/virtio/mmio.yaml).
    Mmio {
        /// Base of its register window.
        base: u64,
    },
    /// A virtio-iommu-pci function (`pci1af4,1057`) on the root bus of a host bridge: a child
    /// node of that bridge (Documentation/devicetree/bindings/virtio/pci-iommu.yaml).
    Pci {
        /// The host bridge's segment.
        segment: u16,
        /// Its requester ID, `bus << 8 | device << 3 | function`, on the bridge's first bus.
        bdf: u16,
    },
}

/// `segment:bus:device.function`, as Linux names a PCI function, for messages.
pub(crate) fn pci_name(segment: u16, bdf: u16) -> String {
    format!("{segment:04x}:{:02x}:{:02x}.{}", bdf >> 8, (bdf >> 3) & 0x1f, bdf & 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(scope: PciIommuScope) -> Vec<(u16, u16, u32)> {
        match scope {
            PciIommuScope::Ranges(r) => {
                r.iter().map(|r| (r.rid_start, r.rid_end, r.endpoint_start)).collect()
            }
            PciIommuScope::Bypass => panic!("bypass"),
        }
    }

    #[test]
    fn all_except_splits_around_bypassed_functions() {
        assert_eq!(ranges(PciIommuScope::all_except(0, 0xf, 0, &[])), [(0, 0xfff, 0)]);
        assert_eq!(
            ranges(PciIommuScope::all_except(0, 0xf, 0x1000, &[0x10, 0x8, 0x10, 0x11])),
            [(0, 7, 0x1000), (9, 0xf, 0x1009), (0x12, 0xfff, 0x1012)]
        );
        // Holes at both ends, and one outside the bus range (ignored).
        assert_eq!(ranges(PciIommuScope::all_except(1, 1, 0, &[0x100, 0x1ff, 0x5])), [(0x101, 0x1fe, 0x101)]);
        assert_eq!(ranges(PciIommuScope::all_except(0xff, 0xff, 0, &[0xffff])), [(0xff00, 0xfffe, 0xff00)]);
        assert_eq!(ranges(PciIommuScope::all_except(0, 0, 0, &(0..=0xff).collect::<Vec<_>>())), []);
    }

    #[test]
    fn pci_names() {
        assert_eq!(pci_name(1, 0x0208 | 3), "0001:02:01.3");
    }
}
