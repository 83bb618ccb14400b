//! Interrupt plumbing shared by the device models: x86 MSI messages, the sink
//! that hands them to KVM, and the line a legacy device raises.
//!
//! dmavm runs KVM with a split irqchip: the local APICs live in KVM and every
//! interrupt, including those of the user-space IOAPIC, reaches them as an
//! MSI (Intel SDM Vol. 3, 11.11 "Message Signalled Interrupts"). The `dmavm`
//! crate implements [`MsiSink`] over `KVM_SIGNAL_MSI`; the device models only
//! compose messages.

/// Base of the MSI address window: bits 31:20 of every x86 MSI address are
/// `0xfee` (SDM 11.11.1).
pub const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

const MSI_ADDRESS_WINDOW_MASK: u64 = 0xfff0_0000;
const MSI_ADDRESS_DEST_ID_SHIFT: u32 = 12;
const MSI_ADDRESS_REDIRECTION_HINT: u64 = 1 << 3;
const MSI_ADDRESS_DEST_MODE_LOGICAL: u64 = 1 << 2;
const MSI_DATA_DELIVERY_MODE_SHIFT: u32 = 8;
const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
const MSI_DATA_TRIGGER_LEVEL: u32 = 1 << 15;

/// Why an interrupt could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    /// The sink (KVM) refused or failed to deliver a message.
    #[error("failed to deliver MSI (address {:#x}, data {:#x}): {source}", .msg.address, .msg.data)]
    Delivery {
        /// The message that was not delivered.
        msg: MsiMessage,
        /// What the sink reported.
        #[source]
        source: std::io::Error,
    },
    /// The interrupt controller has no such input pin.
    #[error("no interrupt pin {0}")]
    InvalidPin(u32),
    /// The interrupt controller's lock was poisoned by a panic on another
    /// thread.
    #[error("interrupt controller unusable after a panic on another thread")]
    Poisoned,
}

/// The delivery mode of an interrupt message (MSI data bits 10:8, IOAPIC
/// redirection entry bits 10:8; SDM Table 11-2). Encodings 3 and 6 are
/// reserved and have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DeliveryMode {
    /// Deliver `vector` to every destination processor.
    Fixed = 0,
    /// Deliver `vector` to the lowest-priority processor of the destination.
    LowestPriority = 1,
    /// System management interrupt (vector ignored).
    Smi = 2,
    /// Non-maskable interrupt (vector ignored).
    Nmi = 4,
    /// INIT (vector ignored).
    Init = 5,
    /// External interrupt: the vector comes from an 8259A-compatible PIC.
    ExtInt = 7,
}

impl DeliveryMode {
    /// Decodes the 3-bit field (higher bits ignored); `None` for the reserved
    /// encodings 3 and 6.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0x7 {
            0 => Some(Self::Fixed),
            1 => Some(Self::LowestPriority),
            2 => Some(Self::Smi),
            4 => Some(Self::Nmi),
            5 => Some(Self::Init),
            7 => Some(Self::ExtInt),
            _ => None,
        }
    }
}

/// How the destination field is interpreted (MSI address bit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationMode {
    /// The destination is one local APIC ID.
    Physical,
    /// The destination is a logical APIC ID bitmap/cluster.
    Logical,
}

/// Edge or level trigger (MSI data bit 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Edge triggered: the local APIC does not tell anyone about the EOI.
    Edge,
    /// Level triggered: the EOI is broadcast back to the IOAPIC, which is
    /// how KVM's split irqchip produces `KVM_EXIT_IOAPIC_EOI`.
    Level,
}

/// The fields of an x86 MSI message, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiFields {
    /// Destination APIC ID (address bits 19:12). Only 8 bits: extended
    /// destination IDs are not supported.
    pub destination: u8,
    /// Physical or logical destination (address bit 2).
    pub dest_mode: DestinationMode,
    /// Redirection hint (address bit 3): lets the chipset redirect to the
    /// lowest-priority processor among the destinations.
    pub redirection_hint: bool,
    /// Interrupt vector (data bits 7:0).
    pub vector: u8,
    /// Delivery mode (data bits 10:8).
    pub delivery_mode: DeliveryMode,
    /// Trigger mode (data bit 15).
    pub trigger_mode: TriggerMode,
    /// Level (data bit 14): assert (1) or deassert (0). The SDM says edge
    /// messages are always treated as asserts; for level messages it is the
    /// state of the interrupt input.
    pub level_assert: bool,
}

/// An x86 MSI message: the 32-bit data written to the 64-bit address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    /// The address (`0xfee0_0000` window; the high half is zero here).
    pub address: u64,
    /// The data.
    pub data: u32,
}

impl MsiMessage {
    /// Encodes `fields` per SDM 11.11.1 (address) and 11.11.2 (data).
    pub fn new(fields: MsiFields) -> Self {
        let mut address = MSI_ADDRESS_BASE | (u64::from(fields.destination) << MSI_ADDRESS_DEST_ID_SHIFT);
        if fields.redirection_hint {
            address |= MSI_ADDRESS_REDIRECTION_HINT;
        }
        if fields.dest_mode == DestinationMode::Logical {
            address |= MSI_ADDRESS_DEST_MODE_LOGICAL;
        }
        let mut data = u32::from(fields.vector)
            | (u32::from(fields.delivery_mode as u8) << MSI_DATA_DELIVERY_MODE_SHIFT);
        if fields.level_assert {
            data |= MSI_DATA_LEVEL_ASSERT;
        }
        if fields.trigger_mode == TriggerMode::Level {
            data |= MSI_DATA_TRIGGER_LEVEL;
        }
        Self { address, data }
    }

    /// Decodes the message; `None` if the address is outside the MSI window
    /// or the delivery mode is reserved.
    pub fn fields(&self) -> Option<MsiFields> {
        if self.address & !0xffff_ffff != 0 || self.address & MSI_ADDRESS_WINDOW_MASK != MSI_ADDRESS_BASE {
            return None;
        }
        Some(MsiFields {
            destination: (self.address >> MSI_ADDRESS_DEST_ID_SHIFT) as u8,
            dest_mode: if self.address & MSI_ADDRESS_DEST_MODE_LOGICAL != 0 {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            redirection_hint: self.address & MSI_ADDRESS_REDIRECTION_HINT != 0,
            vector: self.data as u8,
            delivery_mode: DeliveryMode::from_bits((self.data >> MSI_DATA_DELIVERY_MODE_SHIFT) as u8)?,
            trigger_mode: if self.data & MSI_DATA_TRIGGER_LEVEL != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level_assert: self.data & MSI_DATA_LEVEL_ASSERT != 0,
        })
    }

    /// Low 32 bits of the address (`kvm_msi::address_lo`).
    pub fn address_lo(&self) -> u32 {
        self.address as u32
    }

    /// High 32 bits of the address (`kvm_msi::address_hi`).
    pub fn address_hi(&self) -> u32 {
        (self.address >> 32) as u32
    }
}

/// Where composed MSIs go: implemented by the VMM over `KVM_SIGNAL_MSI`.
///
/// Devices call it with their own lock held (the IOAPIC holds its mutex), so
/// an implementation must never lock a device. Guest MMIO writes that trigger
/// a delivery cannot report a failure, so an implementation should log its
/// own errors as well as returning them.
pub trait MsiSink: Send + Sync {
    /// Delivers one message to the local APICs.
    fn send_msi(&self, msg: MsiMessage) -> Result<(), InterruptError>;
}

/// One interrupt input as seen by the device driving it (for example the
/// 8250 UART on IOAPIC pin 4).
pub trait InterruptLine: Send + Sync {
    /// Drives the line active.
    fn assert(&self) -> Result<(), InterruptError>;

    /// Drives the line inactive.
    fn deassert(&self) -> Result<(), InterruptError>;

    /// Asserts then deasserts: one edge, for devices with a "trigger"
    /// notion (vm-superio's `Trigger`). On a level-triggered pin this
    /// delivers once and leaves the line low. The line is deasserted even
    /// if asserting failed; the first error is returned.
    fn pulse(&self) -> Result<(), InterruptError> {
        let asserted = self.assert();
        let deasserted = self.deassert();
        asserted.and(deasserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_per_sdm() {
        // Physical destination 0x12, vector 0x31, fixed, edge, assert:
        // address = 0xfee00000 | 0x12 << 12 = 0xfee12000,
        // data = 0x31 | 0 << 8 | 1 << 14 = 0x4031.
        let m = MsiMessage::new(MsiFields {
            destination: 0x12,
            dest_mode: DestinationMode::Physical,
            redirection_hint: false,
            vector: 0x31,
            delivery_mode: DeliveryMode::Fixed,
            trigger_mode: TriggerMode::Edge,
            level_assert: true,
        });
        assert_eq!(m.address, 0xfee1_2000);
        assert_eq!(m.data, 0x4031);

        // Logical destination 0xff with redirection hint, vector 0xec,
        // lowest priority, level, assert: address = 0xfeeff000 | 1 << 3 |
        // 1 << 2 = 0xfeeff00c, data = 0xec | 1 << 8 | 1 << 14 | 1 << 15 =
        // 0xc1ec.
        let fields = MsiFields {
            destination: 0xff,
            dest_mode: DestinationMode::Logical,
            redirection_hint: true,
            vector: 0xec,
            delivery_mode: DeliveryMode::LowestPriority,
            trigger_mode: TriggerMode::Level,
            level_assert: true,
        };
        let m = MsiMessage::new(fields);
        assert_eq!(m.address, 0xfeef_f00c);
        assert_eq!(m.data, 0xc1ec);
        assert_eq!((m.address_lo(), m.address_hi()), (0xfeef_f00c, 0));
        assert_eq!(m.fields(), Some(fields));

        // NMI: delivery mode 100b in bits 10:8 = 0x400.
        let m = MsiMessage::new(MsiFields {
            destination: 0,
            dest_mode: DestinationMode::Physical,
            redirection_hint: false,
            vector: 0,
            delivery_mode: DeliveryMode::Nmi,
            trigger_mode: TriggerMode::Edge,
            level_assert: false,
        });
        assert_eq!((m.address, m.data), (0xfee0_0000, 0x400));
    }

    #[test]
    fn rejects_malformed_messages() {
        let reserved_mode = MsiMessage { address: 0xfee0_0000, data: 0x300 };
        assert_eq!(reserved_mode.fields(), None);
        let outside = MsiMessage { address: 0xfed0_0000, data: 0x30 };
        assert_eq!(outside.fields(), None);
        let high = MsiMessage { address: 0x1_fee0_0000, data: 0x30 };
        assert_eq!(high.fields(), None);
        assert_eq!(DeliveryMode::from_bits(6), None);
        assert_eq!(DeliveryMode::from_bits(7), Some(DeliveryMode::ExtInt));
    }

    struct Flaky;
    impl InterruptLine for Flaky {
        fn assert(&self) -> Result<(), InterruptError> {
            Err(InterruptError::InvalidPin(1))
        }
        fn deassert(&self) -> Result<(), InterruptError> {
            Err(InterruptError::Poisoned)
        }
    }

    #[test]
    fn pulse_reports_first_error() {
        assert!(matches!(Flaky.pulse(), Err(InterruptError::InvalidPin(1))));
    }
}
