//! The plain description of the machine that the tables are generated from.
//!
//! The VMM builds a [`Platform`] from its machine model; nothing here knows about table layouts,
//! so the same model can also feed the device-tree encoder and `describe`.

/// Everything the x86 ACPI tables describe about one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Local APIC ID of each vCPU, in vCPU order (all enabled). vCPU `i` gets ACPI processor UID
    /// `i`, so at most 255 CPUs (UID 0xff means "all processors" in the NMI structure).
    pub cpus: Vec<u8>,
    /// The single I/O APIC.
    pub ioapic: IoApic,
    /// ISA IRQs that do not reach the I/O APIC pin with the same number, edge/active-high (may
    /// be empty: every ISA IRQ is then identity mapped, which is what Linux assumes by default).
    pub isa_overrides: Vec<InterruptOverride>,
    /// HW-reduced sleep registers used for power-off (see [`crate::sleep`]).
    pub sleep: SleepRegisters,
    /// Reset register used for reboot (see [`crate::sleep`]).
    pub reset: ResetRegister,
    /// 16550-compatible UARTs, described as `PNP0501` devices in the DSDT.
    pub serial_ports: Vec<SerialPort>,
    /// virtio-mmio devices, described as `LNRO0005` devices in the DSDT.
    pub virtio_mmio: Vec<VirtioMmioDevice>,
    /// PCI Express host bridges, each its own PCI segment: a `PNP0A08` device in the DSDT
    /// (named `PCI0`, `PCI1`, ... by position, at most 16) and an MCFG entry. Empty: no MCFG.
    pub pci_roots: Vec<PciRoot>,
    /// The virtio-iommu and the endpoints it translates, as a VIOT; `None`: no IOMMU, no VIOT.
    pub viot: Option<Viot>,
    /// The Intel VT-d remapping hardware units and the functions they translate, as a DMAR;
    /// `None`: no VT-d, no DMAR.
    pub dmar: Option<Dmar>,
    /// The Generic Event Device with the power button and the hot-pluggable PCI slots (see
    /// [`crate::hotplug`]); `None`: neither.
    pub hotplug: Option<HotplugController>,
}

/// A Generic Event Device (`ACPI0013`) and what it signals: the power button, and device
/// arrivals and eject requests on the slots of hot-pluggable PCI roots. Its registers are the
/// contract of [`crate::hotplug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotplugController {
    /// Guest-physical base of its register block ([`crate::hotplug::REGISTERS_SIZE`] bytes).
    pub base: u64,
    /// Its interrupt (edge-triggered, active high).
    pub gsi: u32,
    /// Whether a control-method power button (`PNP0C0C`) is declared.
    pub power_button: bool,
    /// The segments whose root declares slot objects for device numbers 1-31, each one of
    /// [`Platform::pci_roots`].
    pub segments: Vec<u16>,
}

/// Intel VT-d remapping hardware units and their scopes (the DMAR, DMA Remapping Reporting
/// table, VT-d 4.1 chapter 8): the DMA contract puts exactly the translated PCI functions in a
/// unit's scope and leaves the bypassing ones out of every scope.
///
/// What the guest is told (see [`crate::build`]): a DMAR listed in the XSDT with one DRHD
/// (DMA-remapping hardware unit definition) per unit in the order given, each with its segment,
/// its register window and either one PCI-endpoint device scope per function or
/// `INCLUDE_PCI_ALL`; no RMRR (no device needs memory kept identity-mapped), no ATSR, and no
/// interrupt remapping (the `INTR_REMAP` flag is clear). Linux's intel-iommu reads a unit's
/// capability registers at its register base while parsing the table, so the VMM must emulate
/// them there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmar {
    /// The DMA physical addressability of the platform in bits (the table holds it minus one);
    /// from 12 (a page) to 64.
    pub host_address_width: u8,
    /// The units; at least one. Every segment must be one of [`Platform::pci_roots`]; a
    /// segment's `INCLUDE_PCI_ALL` unit, if any, is its only one (a function in two scopes would
    /// have two units).
    pub units: Vec<DmarUnit>,
}

/// One VT-d remapping hardware unit (a DRHD structure, VT-d 4.1 section 8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarUnit {
    /// The PCI segment whose functions it translates.
    pub segment: u16,
    /// Guest-physical base of its register window: one page, page aligned, not 0, distinct for
    /// every unit.
    pub register_base: u64,
    /// What it translates.
    pub scope: DmarScope,
}

/// The functions a DRHD covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmarScope {
    /// Every function of the segment that no other unit names (`INCLUDE_PCI_ALL`).
    IncludePciAll,
    /// These functions (`bus << 8 | device << 3 | function`), one PCI-endpoint device scope each,
    /// below one of the segment's host bridges; at least one, none named twice across units.
    Endpoints(Vec<u16>),
}

/// A virtio-iommu and its scope (the VIOT, Virtual I/O Translation table): the DMA contract puts
/// exactly the translated devices (`direct-ram-access=off`) in it and leaves the bypassing ones
/// out; the IOMMU itself is never in its own scope.
///
/// What the guest is told (see [`crate::build`]): a VIOT listed in the XSDT, whose first node is
/// the IOMMU and whose other nodes, one per PCI range and one per MMIO endpoint in the order
/// given here, all name that node as their output. Linux finds the IOMMU by its PCI function
/// (which must exist when it scans the table) or, for virtio-mmio, by the ACPI device whose
/// resources contain its base; it matches MMIO endpoints to ACPI devices by the start of their
/// first memory resource. So every MMIO base here must be the base of one of
/// [`Platform::virtio_mmio`], and every PCI function must be below one of [`Platform::pci_roots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viot {
    /// Where the virtio-iommu is.
    pub iommu: ViotIommu,
    /// The translated PCI functions, as ranges of functions on one segment; they must not
    /// overlap, and none may contain the IOMMU. Functions outside every range bypass the IOMMU.
    pub pci_ranges: Vec<ViotPciRange>,
    /// The translated virtio-mmio devices, at most one per base; the IOMMU's own base must not be
    /// among them.
    pub mmio_endpoints: Vec<ViotMmioEndpoint>,
}

/// The transport of a virtio-iommu, and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViotIommu {
    /// A virtio-iommu-pci function (VIOT node type 3).
    Pci {
        /// Its PCI segment.
        segment: u16,
        /// Its bus/device/function, `bus << 8 | device << 3 | function`.
        bdf: u16,
    },
    /// A virtio-iommu on virtio-mmio (VIOT node type 4).
    Mmio {
        /// Guest-physical base of its register window.
        base: u64,
    },
}

impl std::fmt::Display for ViotIommu {
    /// `PCI 0000:00:04.0` or `MMIO 0xd0002000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Pci { segment, bdf } => write!(f, "PCI {}", PciFunction { segment, bdf }),
            Self::Mmio { base } => write!(f, "MMIO {base:#x}"),
        }
    }
}

/// A PCI function as Linux names it, `ssss:bb:dd.f`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PciFunction {
    pub(crate) segment: u16,
    pub(crate) bdf: u16,
}

impl std::fmt::Display for PciFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bus, device, function) = (self.bdf >> 8, (self.bdf >> 3) & 0x1f, self.bdf & 7);
        write!(f, "{:04x}:{bus:02x}:{device:02x}.{function:x}", self.segment)
    }
}

/// Translated PCI functions `bdf_start..=bdf_end` of one segment (VIOT node type 1). Function
/// `bdf` is endpoint `endpoint_start + (bdf - bdf_start)` of the IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViotPciRange {
    /// The PCI segment.
    pub segment: u16,
    /// First function of the range, `bus << 8 | device << 3 | function`.
    pub bdf_start: u16,
    /// Last function of the range (at least `bdf_start`).
    pub bdf_end: u16,
    /// Endpoint ID of `bdf_start`; the endpoint IDs of all ranges and MMIO endpoints must be
    /// distinct (and fit 32 bits).
    pub endpoint_start: u32,
}

/// A translated virtio-mmio device (VIOT node type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViotMmioEndpoint {
    /// Guest-physical base of its register window (the `base` of one of
    /// [`Platform::virtio_mmio`]).
    pub base: u64,
    /// Its endpoint ID.
    pub endpoint: u32,
}

/// A PCI Express host bridge (root complex) and the PCI segment below it: its buses, its
/// enhanced configuration space (ECAM), its memory windows and the DMA coherency of everything
/// below it (the DMA contract puts `_CCA` on the host bridge, not on each device).
///
/// What the guest is told (see [`crate::build`]): `Device (PCIx)` with `_HID PNP0A08`,
/// `_CID PNP0A03`, `_UID` = `_SEG` = `segment`, `_BBN` = `bus_start`, `_CCA`, and a `_CRS` with
/// the bus range and the two memory windows (plus the legacy configuration ports 0xcf8-0xcff on
/// segment 0); an MCFG allocation for the ECAM; and the ECAM region as a motherboard resource
/// (`PNP0C02`), without which Linux refuses to use the ECAM.
///
/// There is no `_PRT` (no INTx routing) and no I/O window: devices below a root must use
/// MSI or MSI-X, have memory BARs only, and should report Interrupt Pin 0. There is no `_OSC`
/// either: the guest keeps the PCIe features (native hotplug, AER, PME, LTR) under firmware
/// control, i.e. does not use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRoot {
    /// PCI segment group number; also the bridge's `_UID`, so it must be unique.
    pub segment: u16,
    /// First bus number decoded by the bridge (its root bus, `_BBN`).
    pub bus_start: u8,
    /// Last bus number decoded by the bridge (at least `bus_start`).
    pub bus_end: u8,
    /// Guest-physical address of the configuration space of bus 0 of this segment, as in the
    /// MCFG (PCI Firmware 3.0 section 4.1.2): bus `b`, device `d`, function `f` is at
    /// `ecam_base + (b << 20 | d << 15 | f << 12)`. Only buses `bus_start..=bus_end` are
    /// decoded, i.e. `ecam_base + (bus_start << 20)` up to `ecam_base + ((bus_end + 1) << 20)`,
    /// which must lie below 4 GiB (Linux ignores an MCFG entry above 4 GiB on a machine whose
    /// firmware has no SMBIOS date, and then every other entry too); 1 MiB aligned. The VMM
    /// should also mark that region reserved in the E820 map.
    pub ecam_base: u64,
    /// The 32-bit memory window for BARs, `(base, length)`; the length must not be 0. Like the
    /// 64-bit one it must not be RAM nor E820-reserved: Linux clips E820-reserved ranges out of
    /// host bridge windows.
    pub mem32: (u32, u32),
    /// The 64-bit memory window for BARs, `(base, length)`; length 0 means none.
    pub mem64: (u64, u64),
    /// `_CCA`: whether DMA of the devices below the bridge is cache-coherent.
    pub coherent: bool,
}

/// A virtio-mmio device (virtio 1.2 section 4.2), as Linux's `virtio_mmio`
/// driver finds it through ACPI: `_HID "LNRO0005"`, its register window and
/// interrupt in `_CRS`, and its DMA coherency in `_CCA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    /// Guest-physical base of its register window (below 4 GiB).
    pub base: u32,
    /// Size of the window.
    pub size: u32,
    /// Global system interrupt (an I/O APIC input), edge triggered, active
    /// high.
    pub gsi: u32,
    /// `_CCA`: whether its DMA is cache-coherent.
    pub coherent: bool,
}

/// An I/O APIC (ACPI 6.5 section 5.2.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC ID.
    pub id: u8,
    /// Guest-physical MMIO base, usually 0xfec0_0000.
    pub address: u32,
    /// First global system interrupt served by this I/O APIC, usually 0.
    pub gsi_base: u32,
}

/// An ISA IRQ that is wired to another GSI or with non-ISA polarity/trigger (ACPI 6.5 section
/// 5.2.12.5, Interrupt Source Override).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptOverride {
    /// ISA IRQ number (0-15).
    pub isa_irq: u8,
    /// Global system interrupt it is delivered on.
    pub gsi: u32,
    /// Input polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
}

/// Polarity of an interrupt input (MPS INTI flags, ACPI 6.5 section 5.2.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Conforms to the bus specification (ISA: active high).
    Conforming,
    /// Active high.
    ActiveHigh,
    /// Active low.
    ActiveLow,
}

/// Trigger mode of an interrupt input (MPS INTI flags, ACPI 6.5 section 5.2.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Conforms to the bus specification (ISA: edge).
    Conforming,
    /// Edge triggered.
    Edge,
    /// Level triggered.
    Level,
}

/// The HW-reduced sleep registers (FADT SLEEP_CONTROL_REG / SLEEP_STATUS_REG, ACPI 6.5 section
/// 4.8.3.7), both one byte in system I/O space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepRegisters {
    /// I/O port of SLEEP_CONTROL_REG.
    pub control_port: u16,
    /// I/O port of SLEEP_STATUS_REG.
    pub status_port: u16,
    /// SLP_TYP value the guest writes to enter S5 (soft off); 3 bits, 0-7.
    pub s5_slp_typ: u8,
}

/// The FADT reset register (ACPI 6.5 section 4.8.3.6), one byte in system I/O space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetRegister {
    /// I/O port of RESET_REG.
    pub port: u16,
    /// RESET_VALUE the guest writes there to reset the machine.
    pub value: u8,
}

/// A 16550-compatible UART on the ISA I/O bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialPort {
    /// First of its 8 I/O ports (COM1: 0x3f8).
    pub io_base: u16,
    /// ISA IRQ (COM1: 4).
    pub irq: u8,
    /// `_UID`, distinguishing it from the other `PNP0501` devices.
    pub uid: u32,
}
