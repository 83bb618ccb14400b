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
