//! The IOAPIC of KVM's split irqchip: an 82093AA-style I/O APIC with 24
//! pins whose every interrupt leaves as an MSI.
//!
//! The register model follows the Intel 82093AA I/O APIC datasheet
//! (section 3), with version 0x20 (as in the ICH/PCH I/O APICs) so that the
//! directed EOI register at offset 0x40 exists; Linux uses it instead of the
//! "flip the pin to edge and back" trick it needs for older versions.
//!
//! Delivery: a redirection entry is turned into the MSI the IOAPIC would
//! put on the system bus (SDM Vol. 3, 11.11) and handed to the [`MsiSink`].
//! Level-triggered pins set Remote IRR on delivery and are not delivered
//! again until an EOI with their vector arrives, either from the guest
//! writing the EOI register or from the VMM on `KVM_EXIT_IOAPIC_EOI`
//! ([`Ioapic::end_of_interrupt`]). KVM only produces that exit for vectors
//! of level-triggered MSI routes on the reserved IOAPIC GSIs, so the VMM
//! must mirror [`Ioapic::routes`] into KVM's GSI routing table, at start-up
//! and whenever [`IoapicSink::routes_changed`] is called.
//!
//! Every access comes from the guest and is treated as hostile: only dword
//! accesses to IOREGSEL, IOWIN and EOI have an effect, everything else reads
//! as zero and is otherwise ignored.

use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::interrupt::{
    DeliveryMode, DestinationMode, InterruptError, InterruptLine, MsiFields, MsiMessage, MsiSink, TriggerMode,
};

/// Guest-physical base of the IOAPIC's MMIO window (the architectural
/// default, also what the MADT's IOAPIC entry should say).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the MMIO window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of input pins (= redirection entries); GSIs 0..24.
pub const IOAPIC_NUM_PINS: u32 = 24;

/// Version register: bits 23:16 maximum redirection entry (23), bits 7:0
/// version 0x20.
const VERSION_VALUE: u32 = ((IOAPIC_NUM_PINS - 1) << 16) | 0x20;

// MMIO offsets (datasheet 3.0; EOI from the ICH I/O APIC).
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const EOI: u64 = 0x40;

// Indirect registers selected by IOREGSEL.
const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDTBL_BASE: u8 = 0x10;
const REG_REDTBL_END: u8 = REG_REDTBL_BASE + 2 * IOAPIC_NUM_PINS as u8;

// ID and arbitration registers: the 4-bit ID sits in bits 27:24.
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0xf;

// Redirection table entry bits (datasheet 3.2.4).
const RTE_DELIVERY_MODE_SHIFT: u32 = 8;
const RTE_DEST_MODE_LOGICAL: u64 = 1 << 11;
/// Delivery status: read-only. Delivery is synchronous here, so never set.
const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_POLARITY_LOW: u64 = 1 << 13;
/// Remote IRR: read-only, level pins only.
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_TRIGGER_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 56;
/// Bits the guest can write: vector, delivery mode, destination mode,
/// polarity, trigger mode, mask and the destination field. Delivery status
/// and Remote IRR are read-only; bits 55:17 are reserved (read as zero;
/// extended destination IDs are not implemented, so the VMM must not
/// advertise KVM_FEATURE_MSI_EXT_DEST_ID).
const RTE_WRITABLE: u64 = 0xff
    | (0x7 << RTE_DELIVERY_MODE_SHIFT)
    | RTE_DEST_MODE_LOGICAL
    | RTE_POLARITY_LOW
    | RTE_TRIGGER_LEVEL
    | RTE_MASKED
    | (0xff << RTE_DEST_SHIFT);

// Keep the read-only bits out of the writable set, whatever edits come later.
const _: () = assert!(RTE_WRITABLE & (RTE_DELIVERY_STATUS | RTE_REMOTE_IRR) == 0);

/// What one pin's redirection entry currently sends, for mirroring into
/// KVM's GSI routing table (GSI = pin, the IOAPIC's GSI base being 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoapicRoute {
    /// The GSI (= pin number).
    pub gsi: u32,
    /// The message a delivery would send; `None` if the entry's delivery
    /// mode is reserved (such a pin delivers nothing).
    pub msi: Option<MsiMessage>,
    /// The entry's mask bit. The message is reported regardless, because
    /// KVM must keep a masked level pin's route to see the EOI of an
    /// interrupt already in service; an irqfd bound to a masked pin must
    /// not be signalled.
    pub masked: bool,
}

/// Where the IOAPIC's output goes: the messages it delivers and, whenever
/// the guest reprograms the redirection table, the table itself. The VMM
/// implements it over KVM.
pub trait IoapicSink: MsiSink {
    /// The guest reprogrammed the redirection table; `routes` is the whole
    /// new table (one entry per pin).
    ///
    /// With a split irqchip KVM only exits with `KVM_EXIT_IOAPIC_EOI` for
    /// vectors it finds in level-triggered MSI routes of GSIs below the
    /// reserved IOAPIC pin count (`kvm_scan_ioapic_routes`), so without
    /// these routes a level-triggered pin stays stuck after its first
    /// delivery. Install every route, masked ones too: dropping a masked
    /// pin's route would lose the EOI of an interrupt already in service.
    /// Called with the IOAPIC's lock held, like [`MsiSink::send_msi`].
    fn routes_changed(&self, routes: &[IoapicRoute]);
}

/// The user-space IOAPIC. Register it on the MMIO bus at [`IOAPIC_BASE`]
/// with [`IOAPIC_SIZE`]; devices drive its pins through
/// [`Ioapic::service_irq`] or an [`IoapicPin`].
pub struct Ioapic {
    /// IOAPIC ID (4 bits).
    id: u8,
    /// Selected indirect register (IOREGSEL bits 7:0).
    ioregsel: u8,
    redirection: [u64; IOAPIC_NUM_PINS as usize],
    /// Current level of each input line (bit n = pin n asserted).
    lines: u32,
    sink: Arc<dyn IoapicSink>,
}

impl std::fmt::Debug for Ioapic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ioapic")
            .field("id", &self.id)
            .field("ioregsel", &self.ioregsel)
            .field("lines", &format_args!("{:#08x}", self.lines))
            .finish_non_exhaustive()
    }
}

fn pin_index(pin: u32) -> Result<usize, InterruptError> {
    if pin < IOAPIC_NUM_PINS {
        Ok(pin as usize)
    } else {
        Err(InterruptError::InvalidPin(pin))
    }
}

impl Ioapic {
    /// An IOAPIC in its reset state (ID 0, every pin masked) delivering to
    /// `sink`. The sink's route callback is not called for this initial
    /// table: the VMM installs [`Ioapic::routes`] itself.
    pub fn new(sink: Arc<dyn IoapicSink>) -> Self {
        Self {
            id: 0,
            ioregsel: 0,
            // Datasheet 3.2.4: the mask bits are set at reset.
            redirection: [RTE_MASKED; IOAPIC_NUM_PINS as usize],
            lines: 0,
            sink,
        }
    }

    /// Returns the registers to their reset state (the input lines keep
    /// their level: the devices driving them were not reset by this).
    pub fn reset(&mut self) {
        self.id = 0;
        self.ioregsel = 0;
        self.redirection = [RTE_MASKED; IOAPIC_NUM_PINS as usize];
        self.notify_routes();
    }

    /// Drives input `pin` to `level` (`true` = asserted).
    ///
    /// `level` is the logical state: the polarity bit is stored for the
    /// guest but not applied, since the virtual wires have no electrical
    /// level (QEMU's IOAPIC does the same). An edge pin delivers on a
    /// rising edge if unmasked (an edge on a masked pin is lost, datasheet
    /// 3.2.4); a level pin delivers while asserted, unmasked and without
    /// Remote IRR.
    pub fn service_irq(&mut self, pin: u32, level: bool) -> Result<(), InterruptError> {
        let idx = pin_index(pin)?;
        let bit = 1u32 << idx;
        let was_asserted = self.lines & bit != 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let entry = self.redirection[idx];
        if entry & RTE_TRIGGER_LEVEL != 0 {
            self.evaluate_level(idx)
        } else if level && !was_asserted && entry & RTE_MASKED == 0 {
            self.deliver(idx).map(|_| ())
        } else {
            Ok(())
        }
    }

    /// An EOI for `vector` (from `KVM_EXIT_IOAPIC_EOI` or the EOI
    /// register): clears Remote IRR on every level-triggered pin with that
    /// vector and delivers again those whose line is still asserted. Every
    /// matching pin is handled; the first delivery error is returned.
    pub fn end_of_interrupt(&mut self, vector: u8) -> Result<(), InterruptError> {
        let mut result = Ok(());
        for idx in 0..self.redirection.len() {
            let entry = self.redirection[idx];
            if entry & RTE_TRIGGER_LEVEL == 0 || entry as u8 != vector {
                continue;
            }
            self.redirection[idx] &= !RTE_REMOTE_IRR;
            let delivered = self.evaluate_level(idx);
            if result.is_ok() {
                result = delivered;
            }
        }
        result
    }

    /// The current route of every pin, in pin order.
    pub fn routes(&self) -> impl Iterator<Item = IoapicRoute> + '_ {
        (0..self.redirection.len()).map(|idx| self.route(idx))
    }

    fn route(&self, idx: usize) -> IoapicRoute {
        IoapicRoute {
            gsi: idx as u32,
            msi: self.message(idx),
            masked: self.redirection[idx] & RTE_MASKED != 0,
        }
    }

    fn notify_routes(&self) {
        let routes: Vec<IoapicRoute> = self.routes().collect();
        self.sink.routes_changed(&routes);
    }

    /// The MSI for pin `idx`'s entry (SDM 11.11: destination field to
    /// address bits 19:12, destination mode to bit 2; vector, delivery mode
    /// and trigger mode to data bits 7:0, 10:8 and 15). The redirection
    /// hint stays 0 as on IOAPIC-generated messages. Level is always
    /// "assert": edge messages are asserts by definition and a level pin
    /// only sends while its line is asserted.
    fn message(&self, idx: usize) -> Option<MsiMessage> {
        let entry = self.redirection[idx];
        Some(MsiMessage::new(MsiFields {
            destination: (entry >> RTE_DEST_SHIFT) as u8,
            dest_mode: if entry & RTE_DEST_MODE_LOGICAL != 0 {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            redirection_hint: false,
            vector: entry as u8,
            delivery_mode: DeliveryMode::from_bits((entry >> RTE_DELIVERY_MODE_SHIFT) as u8)?,
            trigger_mode: if entry & RTE_TRIGGER_LEVEL != 0 { TriggerMode::Level } else { TriggerMode::Edge },
            level_assert: true,
        }))
    }

    /// Sends pin `idx`'s message; `Ok(false)` if its delivery mode is
    /// reserved and nothing was sent.
    fn deliver(&self, idx: usize) -> Result<bool, InterruptError> {
        match self.message(idx) {
            Some(msg) => self.sink.send_msi(msg).map(|()| true),
            None => Ok(false),
        }
    }

    /// Delivers a level pin if its line is asserted, it is unmasked and no
    /// delivery is outstanding. Remote IRR is only set once the sink
    /// accepted the message, so a failed delivery is retried on the next
    /// event for the pin.
    fn evaluate_level(&mut self, idx: usize) -> Result<(), InterruptError> {
        let entry = self.redirection[idx];
        let pending = entry & RTE_TRIGGER_LEVEL != 0
            && entry & (RTE_MASKED | RTE_REMOTE_IRR) == 0
            && self.lines & (1 << idx) != 0;
        if pending && self.deliver(idx)? {
            self.redirection[idx] |= RTE_REMOTE_IRR;
        }
        Ok(())
    }

    fn read_register(&self) -> u32 {
        match self.ioregsel {
            // The arbitration ID is loaded from the APIC ID (datasheet
            // 3.2.3); KVM's in-kernel IOAPIC reports it the same way.
            REG_ID | REG_ARBITRATION => u32::from(self.id) << ID_SHIFT,
            REG_VERSION => VERSION_VALUE,
            reg @ REG_REDTBL_BASE..REG_REDTBL_END => {
                let entry = self.redirection[usize::from((reg - REG_REDTBL_BASE) / 2)];
                if reg & 1 == 0 {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u32) {
        match self.ioregsel {
            REG_ID => self.id = ((value >> ID_SHIFT) & ID_MASK) as u8,
            reg @ REG_REDTBL_BASE..REG_REDTBL_END => {
                let idx = usize::from((reg - REG_REDTBL_BASE) / 2);
                let shift = if reg & 1 == 0 { 0 } else { 32 };
                let writable = (0xffff_ffff_u64 << shift) & RTE_WRITABLE;
                let old_route = self.route(idx);
                let mut entry =
                    (self.redirection[idx] & !writable) | ((u64::from(value) << shift) & writable);
                // Remote IRR is undefined for edge pins; clear it when a pin
                // becomes edge-triggered, as KVM's IOAPIC does (older Linux
                // relies on this to EOI an IOAPIC without an EOI register).
                if entry & RTE_TRIGGER_LEVEL == 0 {
                    entry &= !RTE_REMOTE_IRR;
                }
                self.redirection[idx] = entry;
                // Routes first: KVM must know a level vector before the
                // guest can receive (and EOI) it.
                if self.route(idx) != old_route {
                    self.notify_routes();
                }
                // Unmasking (or switching to level) with the line asserted
                // delivers now. A guest MMIO write cannot fail; the sink
                // logs its own errors.
                let _ = self.evaluate_level(idx);
            }
            // Version and arbitration are read-only; others don't exist.
            _ => {}
        }
    }
}

impl BusDevice for Ioapic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (IOREGSEL, 4) => u32::from(self.ioregsel),
            (IOWIN, 4) => self.read_register(),
            // The EOI register is write-only; anything else is unbacked.
            _ => 0,
        };
        match <&mut [u8; 4]>::try_from(&mut *data) {
            Ok(dword) => *dword = value.to_le_bytes(),
            Err(_) => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Datasheet 3.0: the registers are accessed as dwords only.
        let Ok(dword) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(dword);
        match offset {
            // Bits 31:8 of IOREGSEL are reserved.
            IOREGSEL => self.ioregsel = value as u8,
            IOWIN => self.write_register(value),
            EOI => {
                let _ = self.end_of_interrupt(value as u8);
            }
            _ => {}
        }
    }
}

/// One IOAPIC input pin, as a device holds it.
///
/// A pin is not wire-ORed: give each pin to a single device.
#[derive(Debug, Clone)]
pub struct IoapicPin {
    ioapic: Arc<Mutex<Ioapic>>,
    pin: u32,
}

impl IoapicPin {
    /// A handle on `pin` of `ioapic`; fails if the IOAPIC has no such pin.
    pub fn new(ioapic: Arc<Mutex<Ioapic>>, pin: u32) -> Result<Self, InterruptError> {
        pin_index(pin)?;
        Ok(Self { ioapic, pin })
    }

    /// The pin number (= GSI).
    pub fn pin(&self) -> u32 {
        self.pin
    }

    fn set(&self, level: bool) -> Result<(), InterruptError> {
        self.ioapic.lock().map_err(|_| InterruptError::Poisoned)?.service_irq(self.pin, level)
    }
}

impl InterruptLine for IoapicPin {
    fn assert(&self) -> Result<(), InterruptError> {
        self.set(true)
    }

    fn deassert(&self) -> Result<(), InterruptError> {
        self.set(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records every message and route update; can be told to fail.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<MsiMessage>>,
        route_updates: Mutex<Vec<Vec<IoapicRoute>>>,
        fail: AtomicBool,
    }

    impl MsiSink for Recorder {
        fn send_msi(&self, msg: MsiMessage) -> Result<(), InterruptError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(InterruptError::Delivery { msg, source: std::io::Error::other("injected") });
            }
            self.sent.lock().unwrap().push(msg);
            Ok(())
        }
    }

    impl IoapicSink for Recorder {
        fn routes_changed(&self, routes: &[IoapicRoute]) {
            self.route_updates.lock().unwrap().push(routes.to_vec());
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<(u64, u32)> {
            self.sent.lock().unwrap().drain(..).map(|m| (m.address, m.data)).collect()
        }
    }

    fn ioapic() -> (Ioapic, Arc<Recorder>) {
        let sink = Arc::new(Recorder::default());
        (Ioapic::new(sink.clone()), sink)
    }

    fn write_reg(io: &mut Ioapic, reg: u32, value: u32) {
        io.write(0x00, &reg.to_le_bytes());
        io.write(0x10, &value.to_le_bytes());
    }

    fn read_reg(io: &mut Ioapic, reg: u32) -> u32 {
        io.write(0x00, &reg.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(0x10, &mut b);
        u32::from_le_bytes(b)
    }

    /// Every indirect register as the guest sees it, plus IOREGSEL.
    fn snapshot(io: &mut Ioapic) -> Vec<u32> {
        let mut sel = [0u8; 4];
        io.read(0x00, &mut sel);
        let mut regs: Vec<u32> = (0..=0xff).map(|r| read_reg(io, r)).collect();
        io.write(0x00, &sel);
        regs.push(u32::from_le_bytes(sel));
        regs
    }

    #[test]
    fn version_id_and_arbitration() {
        let (mut io, _) = ioapic();
        // 23 (0x17) as maximum redirection entry, version 0x20.
        assert_eq!(read_reg(&mut io, 0x01), 0x0017_0020);
        assert_eq!(read_reg(&mut io, 0x00), 0);
        // Only ID bits 27:24 are writable.
        write_reg(&mut io, 0x00, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, 0x00), 0x0f00_0000);
        assert_eq!(read_reg(&mut io, 0x02), 0x0f00_0000);
        write_reg(&mut io, 0x00, 0x0500_0000);
        assert_eq!(read_reg(&mut io, 0x00), 0x0500_0000);
        // Version and arbitration are read-only.
        write_reg(&mut io, 0x01, 0);
        write_reg(&mut io, 0x02, 0);
        assert_eq!(read_reg(&mut io, 0x01), 0x0017_0020);
        assert_eq!(read_reg(&mut io, 0x02), 0x0500_0000);
        // IOREGSEL reads back its low byte.
        io.write(0x00, &0xdead_be12_u32.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(0x00, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x12);
    }

    #[test]
    fn reset_state_is_masked() {
        let (mut io, sink) = ioapic();
        for pin in 0..24 {
            // Mask bit 16 set, everything else 0.
            assert_eq!(read_reg(&mut io, 0x10 + 2 * pin), 0x0001_0000);
            assert_eq!(read_reg(&mut io, 0x11 + 2 * pin), 0);
            io.service_irq(pin, true).unwrap();
        }
        assert!(sink.take().is_empty());
        assert_eq!(io.routes().count(), 24);
        assert!(io.routes().all(|r| r.masked));
    }

    #[test]
    fn edge_pin_sends_programmed_msi() {
        let (mut io, sink) = ioapic();
        // Pin 4: vector 0x24, fixed, physical, edge, active high, unmasked;
        // destination APIC ID 3 in bits 63:56.
        write_reg(&mut io, 0x18, 0x0000_0024);
        write_reg(&mut io, 0x19, 0x0300_0000);
        io.service_irq(4, true).unwrap();
        // Address 0xfee00000 | 3 << 12; data vector 0x24 | assert (bit 14).
        assert_eq!(sink.take(), vec![(0xfee0_3000, 0x0000_4024)]);
        // Staying high is not a new edge.
        io.service_irq(4, true).unwrap();
        assert!(sink.take().is_empty());
        io.service_irq(4, false).unwrap();
        assert!(sink.take().is_empty());
        io.service_irq(4, true).unwrap();
        assert_eq!(sink.take(), vec![(0xfee0_3000, 0x0000_4024)]);

        // Pin 7: vector 0x30, lowest priority (001b), logical (bit 11),
        // destination 0x0f: address 0xfee0f000 | 1 << 2, data 0x30 |
        // 1 << 8 | 1 << 14.
        write_reg(&mut io, 0x1e, 0x0000_0930);
        write_reg(&mut io, 0x1f, 0x0f00_0000);
        io.service_irq(7, true).unwrap();
        assert_eq!(sink.take(), vec![(0xfee0_f004, 0x0000_4130)]);

        // NMI (100b) to APIC 1: data 0x400 | assert, vector 0.
        write_reg(&mut io, 0x21, 0x0100_0000);
        write_reg(&mut io, 0x20, 0x0000_0400);
        io.service_irq(8, true).unwrap();
        assert_eq!(sink.take(), vec![(0xfee0_1000, 0x0000_4400)]);
    }

    #[test]
    fn masked_edge_is_lost() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x18, 0x0001_0024);
        io.service_irq(4, true).unwrap();
        io.service_irq(4, false).unwrap();
        write_reg(&mut io, 0x18, 0x0000_0024);
        assert!(sink.take().is_empty());
        io.service_irq(4, true).unwrap();
        assert_eq!(sink.take().len(), 1);
        // Unmasking with an edge pin's line high does not deliver either.
        write_reg(&mut io, 0x18, 0x0001_0024);
        write_reg(&mut io, 0x18, 0x0000_0024);
        assert!(sink.take().is_empty());
    }

    #[test]
    fn level_pin_waits_for_eoi() {
        let (mut io, sink) = ioapic();
        // Pin 10: vector 0x41, fixed, physical, level (bit 15), masked
        // (bit 16); destination 1.
        write_reg(&mut io, 0x25, 0x0100_0000);
        write_reg(&mut io, 0x24, 0x0001_8041);
        io.service_irq(10, true).unwrap();
        assert!(sink.take().is_empty());

        // Unmasking with the line asserted delivers: address 0xfee01000,
        // data 0x41 | assert (bit 14) | level (bit 15) = 0xc041.
        write_reg(&mut io, 0x24, 0x0000_8041);
        assert_eq!(sink.take(), vec![(0xfee0_1000, 0x0000_c041)]);
        // Remote IRR (bit 14) is now set.
        assert_eq!(read_reg(&mut io, 0x24), 0x0000_c041);

        // Not delivered again until the EOI, whatever the line does.
        io.service_irq(10, true).unwrap();
        io.end_of_interrupt(0x42).unwrap();
        assert!(sink.take().is_empty());

        // EOI with the line still asserted: delivered again.
        io.end_of_interrupt(0x41).unwrap();
        assert_eq!(sink.take(), vec![(0xfee0_1000, 0x0000_c041)]);
        assert_eq!(read_reg(&mut io, 0x24), 0x0000_c041);

        // Line dropped, then EOI through the EOI register: Remote IRR
        // clears, nothing is sent.
        io.service_irq(10, false).unwrap();
        io.write(0x40, &0x41u32.to_le_bytes());
        assert!(sink.take().is_empty());
        assert_eq!(read_reg(&mut io, 0x24), 0x0000_8041);

        // Raising it again delivers at once.
        io.service_irq(10, true).unwrap();
        assert_eq!(sink.take(), vec![(0xfee0_1000, 0x0000_c041)]);
    }

    #[test]
    fn eoi_covers_every_pin_with_the_vector() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x10 + 2 * 5, 0x0000_8050);
        write_reg(&mut io, 0x10 + 2 * 9, 0x0000_8050);
        io.service_irq(5, true).unwrap();
        io.service_irq(9, true).unwrap();
        assert_eq!(sink.take().len(), 2);
        io.service_irq(5, false).unwrap();
        io.end_of_interrupt(0x50).unwrap();
        // Pin 9 is still asserted, pin 5 is not.
        assert_eq!(sink.take().len(), 1);
        assert_eq!(read_reg(&mut io, 0x10 + 2 * 5) & (1 << 14), 0);
        assert_ne!(read_reg(&mut io, 0x10 + 2 * 9) & (1 << 14), 0);
    }

    #[test]
    fn read_only_and_reserved_bits_ignore_writes() {
        let (mut io, sink) = ioapic();
        // Delivery status (12), Remote IRR (14) and reserved 31:17 set on
        // a masked edge entry: none of them stick.
        write_reg(&mut io, 0x12, 0xfffe_5000 | 0x0001_0033);
        assert_eq!(read_reg(&mut io, 0x12), 0x0001_0033);
        // High dword: only bits 31:24 (destination) are writable.
        write_reg(&mut io, 0x13, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, 0x13), 0xff00_0000);
        // Writing the low half leaves the high half alone and vice versa.
        write_reg(&mut io, 0x12, 0x0001_2034);
        assert_eq!(read_reg(&mut io, 0x12), 0x0001_2034);
        assert_eq!(read_reg(&mut io, 0x13), 0xff00_0000);
        assert!(sink.take().is_empty());
    }

    #[test]
    fn switching_to_edge_clears_remote_irr() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x10, 0x0000_8061);
        io.service_irq(0, true).unwrap();
        assert_eq!(sink.take().len(), 1);
        assert_eq!(read_reg(&mut io, 0x10), 0x0000_c061);
        write_reg(&mut io, 0x10, 0x0001_0061);
        assert_eq!(read_reg(&mut io, 0x10), 0x0001_0061);
        // Back to level and unmasked with the line high: delivered again.
        write_reg(&mut io, 0x10, 0x0000_8061);
        assert_eq!(sink.take().len(), 1);
    }

    #[test]
    fn reserved_delivery_mode_sends_nothing() {
        let (mut io, sink) = ioapic();
        // Delivery mode 011b on a level pin.
        write_reg(&mut io, 0x10, 0x0000_8361);
        io.service_irq(0, true).unwrap();
        assert!(sink.take().is_empty());
        assert_eq!(read_reg(&mut io, 0x10), 0x0000_8361);
        assert_eq!(io.routes().next().unwrap().msi, None);
    }

    #[test]
    fn failed_delivery_is_reported_and_retried() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x10, 0x0000_8061);
        sink.fail.store(true, Ordering::SeqCst);
        assert!(matches!(io.service_irq(0, true), Err(InterruptError::Delivery { .. })));
        // No Remote IRR after a failure, so the next event retries.
        assert_eq!(read_reg(&mut io, 0x10), 0x0000_8061);
        sink.fail.store(false, Ordering::SeqCst);
        io.service_irq(0, true).unwrap();
        assert_eq!(sink.take().len(), 1);

        write_reg(&mut io, 0x12, 0x0000_0062);
        sink.fail.store(true, Ordering::SeqCst);
        assert!(io.service_irq(1, true).is_err());
        assert!(io.end_of_interrupt(0x61).is_err());
    }

    #[test]
    fn route_updates_follow_the_table() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x25, 0x0200_0000);
        write_reg(&mut io, 0x24, 0x0000_8041);
        let updates = sink.route_updates.lock().unwrap().clone();
        assert_eq!(updates.len(), 2);
        let last = updates.last().unwrap();
        assert_eq!(last.len(), 24);
        assert_eq!(
            last[10],
            IoapicRoute {
                gsi: 10,
                msi: Some(MsiMessage { address: 0xfee0_2000, data: 0xc041 }),
                masked: false,
            }
        );
        // Rewriting the same value, or touching only the polarity, changes
        // no route and triggers no update.
        write_reg(&mut io, 0x24, 0x0000_8041);
        write_reg(&mut io, 0x24, 0x0000_a041);
        assert_eq!(sink.route_updates.lock().unwrap().len(), 2);
        // Masking does change it (the message is still reported).
        write_reg(&mut io, 0x24, 0x0001_a041);
        let updates = sink.route_updates.lock().unwrap().clone();
        assert_eq!(updates.len(), 3);
        assert!(updates[2][10].masked);
        assert!(updates[2][10].msi.is_some());
        io.reset();
        assert_eq!(sink.route_updates.lock().unwrap().len(), 4);
        assert_eq!(read_reg(&mut io, 0x24), 0x0001_0000);
    }

    /// A guest rewriting redirection entries (any register, any value)
    /// thousands of times: every route update still names the 24 pins and
    /// nothing else, so the routes the VMM mirrors into KVM stay 24.
    #[test]
    fn rewritten_entries_keep_24_routes() {
        let (mut io, sink) = ioapic();
        let mut rng = crate::test_utils::xorshift::Xorshift(0x0010_a91c);
        for _ in 0..10_000 {
            let r = rng.next_u64();
            write_reg(&mut io, (r % 0x40) as u32, (r >> 32) as u32);
        }
        let updates = sink.route_updates.lock().unwrap();
        assert!(updates.len() > 1000, "{} updates", updates.len());
        for routes in updates.iter() {
            let gsis: Vec<u32> = routes.iter().map(|r| r.gsi).collect();
            assert_eq!(gsis, (0..IOAPIC_NUM_PINS).collect::<Vec<_>>());
        }
    }

    #[test]
    fn garbage_accesses_change_nothing() {
        let (mut io, sink) = ioapic();
        write_reg(&mut io, 0x00, 0x0300_0000);
        write_reg(&mut io, 0x18, 0x0000_8024);
        write_reg(&mut io, 0x19, 0x0100_0000);
        io.service_irq(4, true).unwrap();
        assert_eq!(sink.take().len(), 1);
        io.write(0x00, &0x18u32.to_le_bytes());
        let before = snapshot(&mut io);
        let updates = sink.route_updates.lock().unwrap().len();

        let junk = [0xffu8; 8];
        for offset in (0..0x1000u64).chain([0x1000, u64::MAX - 3, u64::MAX]) {
            for len in 0..=8 {
                let dword_register = matches!(offset, 0x00 | 0x10 | 0x40);
                if !(dword_register && len == 4) {
                    io.write(offset, &junk[..len]);
                }
                let mut buf = [0xaau8; 8];
                io.read(offset, &mut buf[..len]);
                // Unbacked reads are all zeros.
                if !(matches!(offset, 0x00 | 0x10) && len == 4) {
                    assert_eq!(&buf[..len], &[0u8; 8][..len], "{offset:#x}/{len}");
                }
            }
        }
        // IOREGSEL pointing past the table or at nothing: writes ignored,
        // reads zero.
        for sel in [0x03, 0x0f, 0x40, 0x41, 0x80, 0xff, 0xffff_ffff] {
            write_reg(&mut io, sel, 0xffff_ffff);
            assert_eq!(read_reg(&mut io, sel), 0);
        }
        io.write(0x00, &0x18u32.to_le_bytes());
        assert_eq!(snapshot(&mut io), before);
        assert!(sink.take().is_empty());
        assert_eq!(sink.route_updates.lock().unwrap().len(), updates);
        assert!(matches!(io.service_irq(24, true), Err(InterruptError::InvalidPin(24))));
        assert!(io.service_irq(u32::MAX, false).is_err());
    }

    #[test]
    fn pin_handle_drives_the_ioapic() {
        let sink = Arc::new(Recorder::default());
        let io = Arc::new(Mutex::new(Ioapic::new(sink.clone())));
        assert!(matches!(IoapicPin::new(io.clone(), 24), Err(InterruptError::InvalidPin(24))));
        let uart = IoapicPin::new(io.clone(), 4).unwrap();
        assert_eq!(uart.pin(), 4);
        write_reg(&mut io.lock().unwrap(), 0x18, 0x0000_0024);
        uart.pulse().unwrap();
        uart.pulse().unwrap();
        assert_eq!(sink.take().len(), 2);
        uart.assert().unwrap();
        uart.assert().unwrap();
        uart.deassert().unwrap();
        assert_eq!(sink.take().len(), 1);
        // Usable as a trait object and as the bus's shared device.
        let _line: Arc<dyn InterruptLine> = Arc::new(uart);
        let _dev: crate::bus::SharedDevice = io;
    }
}
