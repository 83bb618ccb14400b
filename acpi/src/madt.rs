//! Multiple APIC Description Table, revision 6 (ACPI 6.5 section 5.2.12).
//!
//! `acpi_tables` has a MADT, but at revision 1 and without interrupt source override or local
//! APIC NMI structures, so the table is assembled here on its generic SDT; its processor local
//! APIC and I/O APIC structures are reused.
//!
//! Content: local APIC at 0xfee0_0000, flags 0 (PCAT_COMPAT clear: there is no 8259 pair to mask,
//! section 5.2.12.4), then one processor local APIC per vCPU, the I/O APIC, the interrupt source
//! overrides, and one local APIC NMI for all processors on LINT1. Processor structures come first
//! and in vCPU order, so the boot processor (vCPU 0) is the first one (section 5.2.12.1).

use std::collections::HashSet;

use acpi_tables::madt::{EnabledStatus, IoApic as IoApicEntry, ProcessorLocalApic};
use acpi_tables::Aml;

use crate::description::{InterruptOverride, Platform, Polarity, TriggerMode};
use crate::error::Error;
use crate::identity::new_table;

/// Guest-physical address of every local APIC (the x86 architectural default).
pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;

/// MADT revision defined by ACPI 6.5.
const REVISION: u8 = 6;
/// Offset of the Local Interrupt Controller Address (section 5.2.12).
const LOCAL_APIC_ADDRESS_OFFSET: usize = 36;
/// Offset of the MADT flags (section 5.2.12); 0 leaves PCAT_COMPAT clear.
const FLAGS_OFFSET: usize = 40;
/// Fixed part of the MADT, before the interrupt controller structures.
const FIXED_LEN: u32 = 44;

/// Interrupt Source Override structure type (section 5.2.12).
const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
/// Local APIC NMI structure type (section 5.2.12).
const TYPE_LOCAL_APIC_NMI: u8 = 4;
/// Bus 0 is ISA, the only source bus of overrides (section 5.2.12.5).
const BUS_ISA: u8 = 0;
/// Processor UID meaning "all processors" in a local APIC NMI structure (section 5.2.12.7).
const ALL_PROCESSORS: u8 = 0xff;
/// LINT1 input of the local APIC, where NMI is wired on a PC.
const LINT1: u8 = 1;
/// Highest ISA IRQ.
const ISA_IRQ_MAX: u8 = 15;

/// MPS INTI flags (section 5.2.12.5): polarity in bits 0-1, trigger mode in bits 2-3; the value 0b10 is
/// reserved in both fields.
fn mps_inti_flags(polarity: Polarity, trigger: TriggerMode) -> u16 {
    let polarity = match polarity {
        Polarity::Conforming => 0b00,
        Polarity::ActiveHigh => 0b01,
        Polarity::ActiveLow => 0b11,
    };
    let trigger = match trigger {
        TriggerMode::Conforming => 0b00,
        TriggerMode::Edge => 0b01,
        TriggerMode::Level => 0b11,
    };
    polarity | (trigger << 2)
}

/// Interrupt Source Override structure (section 5.2.12.5), 10 bytes.
fn interrupt_source_override(o: &InterruptOverride) -> Vec<u8> {
    let mut s = vec![TYPE_INTERRUPT_SOURCE_OVERRIDE, 10, BUS_ISA, o.isa_irq];
    s.extend_from_slice(&o.gsi.to_le_bytes());
    s.extend_from_slice(&mps_inti_flags(o.polarity, o.trigger).to_le_bytes());
    s
}

/// Local APIC NMI structure (section 5.2.12.7), 6 bytes: NMI on LINT1 of every
/// processor, with flags 0 ("conforms to the bus", i.e. edge, active high, as on a PC).
fn local_apic_nmi_all_lint1() -> Vec<u8> {
    let flags = mps_inti_flags(Polarity::Conforming, TriggerMode::Conforming);
    let mut s = vec![TYPE_LOCAL_APIC_NMI, 6, ALL_PROCESSORS];
    s.extend_from_slice(&flags.to_le_bytes());
    s.push(LINT1);
    s
}

/// `(ACPI Processor UID, local APIC ID)` of each vCPU, in vCPU order: vCPU `i` is UID `i`. The MADT
/// and the DSDT's processor devices both take the UIDs from here, since the OS pairs them by UID
/// (ACPI 6.5 section 5.2.12.2 and 8.4). Only meaningful after [`check_cpus`] accepted `cpus`.
pub(crate) fn processor_uids(cpus: &[u8]) -> impl Iterator<Item = (u8, u8)> + '_ {
    (0..=u8::MAX).zip(cpus.iter().copied())
}

/// Checks what the one-byte xAPIC structures can express.
pub(crate) fn check_cpus(cpus: &[u8]) -> Result<(), Error> {
    if cpus.is_empty() {
        return Err(Error::NoCpus);
    }
    // UIDs 0..len must stay below ALL_PROCESSORS.
    if cpus.len() > usize::from(ALL_PROCESSORS) {
        return Err(Error::TooManyCpus(cpus.len()));
    }
    let mut seen = HashSet::new();
    for &id in cpus {
        if id == 0xff {
            return Err(Error::BroadcastApicId);
        }
        if !seen.insert(id) {
            return Err(Error::DuplicateApicId(id));
        }
    }
    Ok(())
}

/// The MADT of `platform`.
pub(crate) fn encode(platform: &Platform) -> Result<Vec<u8>, Error> {
    check_cpus(&platform.cpus)?;
    if let Some(o) = platform.isa_overrides.iter().find(|o| o.isa_irq > ISA_IRQ_MAX) {
        return Err(Error::OverrideNotIsa(o.isa_irq));
    }

    let mut structures = Vec::new();
    for (uid, apic_id) in processor_uids(&platform.cpus) {
        ProcessorLocalApic::new(uid, apic_id, EnabledStatus::Enabled).to_aml_bytes(&mut structures);
    }
    let ioapic = platform.ioapic;
    IoApicEntry::new(ioapic.id, ioapic.address, ioapic.gsi_base).to_aml_bytes(&mut structures);
    for o in &platform.isa_overrides {
        structures.extend(interrupt_source_override(o));
    }
    structures.extend(local_apic_nmi_all_lint1());

    let mut madt = new_table(*b"APIC", REVISION);
    // Grow to the fixed part first, so the header length covers the two fields written next.
    madt.append_slice(&[0; (FIXED_LEN as usize) - crate::identity::HEADER_LEN]);
    madt.write_u32(LOCAL_APIC_ADDRESS_OFFSET, LOCAL_APIC_ADDRESS);
    madt.write_u32(FLAGS_OFFSET, 0);
    madt.append_slice(&structures);
    Ok(madt.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{byte_sum, le_u32, sample_platform};

    /// (type, bytes) of each interrupt controller structure.
    fn structures(madt: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            let len = usize::from(madt[at + 1]);
            assert!(len >= 2, "structure length");
            out.push((madt[at], &madt[at..at + len]));
            at += len;
        }
        assert_eq!(at, madt.len(), "structures end at the table end");
        out
    }

    #[test]
    fn header_fixed_part_and_checksum() {
        let b = encode(&sample_platform()).unwrap();
        assert_eq!(&b[0..4], b"APIC");
        assert_eq!(le_u32(&b, 4) as usize, b.len());
        assert_eq!(b[8], 6, "revision");
        assert_eq!(byte_sum(&b), 0);
        assert_eq!(&b[36..44], &[0x00, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], "LAPIC address, PCAT_COMPAT clear");
    }

    #[test]
    fn one_enabled_local_apic_per_cpu_in_order() {
        let mut p = sample_platform();
        p.cpus = vec![0, 2, 4, 6];
        let b = encode(&p).unwrap();
        let lapics: Vec<_> = structures(&b).into_iter().filter(|(t, _)| *t == 0).map(|(_, s)| s).collect();
        assert_eq!(
            lapics,
            vec![
                &[0, 8, 0, 0, 1, 0, 0, 0][..],
                &[0, 8, 1, 2, 1, 0, 0, 0][..],
                &[0, 8, 2, 4, 1, 0, 0, 0][..],
                &[0, 8, 3, 6, 1, 0, 0, 0][..],
            ]
        );
    }

    #[test]
    fn ioapic_override_and_nmi_bytes() {
        let mut p = sample_platform();
        p.isa_overrides = vec![
            InterruptOverride {
                isa_irq: 0,
                gsi: 2,
                polarity: Polarity::Conforming,
                trigger: TriggerMode::Conforming,
            },
            InterruptOverride {
                isa_irq: 9,
                gsi: 9,
                polarity: Polarity::ActiveHigh,
                trigger: TriggerMode::Level,
            },
            InterruptOverride {
                isa_irq: 11,
                gsi: 20,
                polarity: Polarity::ActiveLow,
                trigger: TriggerMode::Edge,
            },
        ];
        let b = encode(&p).unwrap();
        let s = structures(&b);
        let types: Vec<u8> = s.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, vec![0, 0, 1, 2, 2, 2, 4]);
        // I/O APIC ID 0 at 0xfec0_0000, GSI base 0.
        assert_eq!(s[2].1, &[1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
        assert_eq!(s[3].1, &[2, 10, 0, 0, 2, 0, 0, 0, 0x00, 0x00]);
        // active high 0b01 | level 0b11 << 2 = 0x0d
        assert_eq!(s[4].1, &[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0x00]);
        // active low 0b11 | edge 0b01 << 2 = 0x07
        assert_eq!(s[5].1, &[2, 10, 0, 11, 20, 0, 0, 0, 0x07, 0x00]);
        // all processors, flags 0, LINT1
        assert_eq!(s[6].1, &[4, 6, 0xff, 0, 0, 1]);
    }

    #[test]
    fn rejects_unrepresentable_cpus() {
        let mut p = sample_platform();
        p.cpus = vec![];
        assert!(matches!(encode(&p), Err(Error::NoCpus)));
        p.cpus = vec![0, 1, 1];
        assert!(matches!(encode(&p), Err(Error::DuplicateApicId(1))));
        p.cpus = vec![0, 0xff];
        assert!(matches!(encode(&p), Err(Error::BroadcastApicId)));
        p.cpus = (0..=255).collect();
        assert!(matches!(encode(&p), Err(Error::TooManyCpus(256))));
        p.cpus = (1..=255).collect();
        assert!(matches!(encode(&p), Err(Error::BroadcastApicId)));
        p.cpus = (0..=254).collect();
        assert!(encode(&p).is_ok(), "255 CPUs with UIDs 0..=254");
    }

    #[test]
    fn rejects_non_isa_override() {
        let mut p = sample_platform();
        p.isa_overrides = vec![InterruptOverride {
            isa_irq: 16,
            gsi: 16,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
        }];
        assert!(matches!(encode(&p), Err(Error::OverrideNotIsa(16))));
    }
}
