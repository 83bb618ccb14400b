//! From a [`Platform`] to placed tables.
//!
//! Memory order: RSDP, XSDT, FADT, DSDT, then the tables listed by the XSDT after the FADT (MADT,
//! MCFG if there are PCI host bridges, VIOT if there is a virtio-iommu, DMAR if there are VT-d
//! units). Every table
//! except the FADT, XSDT and RSDP is independent of where anything goes, so those are encoded
//! first; their lengths fix the layout; then the three pointer tables are encoded with the final
//! addresses.

use std::ops::Range;

use crate::blob::{AcpiTables, Blob, RSDP_SIGNATURE};
use crate::description::Platform;
use crate::error::Error;
use crate::layout::{Placer, RSDP_ALIGN, TABLE_ALIGN};
use crate::{dmar, dsdt, fadt, madt, mcfg, rsdp, viot, xsdt};

/// A finished, position-independent table.
struct Table {
    signature: [u8; 4],
    bytes: Vec<u8>,
}

/// The tables the XSDT lists besides the FADT, in XSDT order. New tables (VIOT, DMAR) are
/// appended here; nothing else needs to change for them to be placed and listed.
fn listed_tables(platform: &Platform) -> Result<Vec<Table>, Error> {
    let mut tables = vec![Table { signature: *b"APIC", bytes: madt::encode(platform)? }];
    if let Some(bytes) = mcfg::encode(&platform.pci_roots)? {
        tables.push(Table { signature: *b"MCFG", bytes });
    }
    if let Some(bytes) = viot::encode(platform)? {
        tables.push(Table { signature: *b"VIOT", bytes });
    }
    if let Some(bytes) = dmar::encode(platform)? {
        tables.push(Table { signature: *b"DMAR", bytes });
    }
    Ok(tables)
}

fn name(signature: &[u8; 4]) -> String {
    String::from_utf8_lossy(signature).into_owned()
}

/// Builds the RSDP and all tables of `platform` inside the guest-physical `region` (for the BIOS
/// area scan Linux does without EFI, 0xe0000..0x100000). The RSDP comes first, at the first
/// 16-byte boundary of the region; the tables follow, 8-byte aligned.
///
/// Fails if the description cannot be expressed (see [`Error`]) or the tables do not fit.
pub fn build(platform: &Platform, region: Range<u64>) -> Result<AcpiTables, Error> {
    let dsdt = Table { signature: *b"DSDT", bytes: dsdt::encode(platform)? };
    let listed = listed_tables(platform)?;

    let mut placer = Placer::new(region);
    let rsdp_addr = placer.place("RSDP", rsdp::LEN, RSDP_ALIGN)?;
    let xsdt_addr = placer.place("XSDT", xsdt::len(1 + listed.len()), TABLE_ALIGN)?;
    let fadt_addr = placer.place("FACP", fadt::len(), TABLE_ALIGN)?;
    let dsdt_addr = placer.place("DSDT", dsdt.bytes.len(), TABLE_ALIGN)?;
    let listed_addrs = listed
        .iter()
        .map(|t| placer.place(&name(&t.signature), t.bytes.len(), TABLE_ALIGN))
        .collect::<Result<Vec<u64>, Error>>()?;

    let xsdt_entries: Vec<u64> = std::iter::once(fadt_addr).chain(listed_addrs.iter().copied()).collect();
    let mut blobs = vec![
        Blob { addr: rsdp_addr, signature: RSDP_SIGNATURE, bytes: rsdp::encode(xsdt_addr) },
        Blob { addr: xsdt_addr, signature: *b"XSDT", bytes: xsdt::encode(&xsdt_entries) },
        Blob { addr: fadt_addr, signature: *b"FACP", bytes: fadt::encode(platform, dsdt_addr) },
        Blob { addr: dsdt_addr, signature: dsdt.signature, bytes: dsdt.bytes },
    ];
    blobs.extend(listed.into_iter().zip(listed_addrs).map(|(t, addr)| Blob {
        addr,
        signature: t.signature,
        bytes: t.bytes,
    }));
    Ok(AcpiTables { rsdp_addr, blobs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{Viot, ViotIommu, ViotPciRange};
    use crate::test_utils::{
        aml_devices, byte_sum, le_u32, le_u64, sample_pci_root, sample_platform, AmlDevice,
    };

    const REGION: Range<u64> = 0xe_0000..0x10_0000;

    fn built() -> AcpiTables {
        build(&sample_platform(), REGION).unwrap()
    }

    fn blob<'a>(t: &'a AcpiTables, sig: &[u8; 4]) -> &'a Blob {
        t.find(*sig).unwrap()
    }

    #[test]
    fn all_tables_present_in_address_order() {
        let t = built();
        let sigs: Vec<String> = t.blobs.iter().map(Blob::signature_name).collect();
        assert_eq!(sigs, ["RSDP", "XSDT", "FACP", "DSDT", "APIC"]);
        assert_eq!(t.rsdp_addr, 0xe_0000);
        assert_eq!(t.blobs[0].addr, t.rsdp_addr);
        for pair in t.blobs.windows(2) {
            assert!(pair[0].addr + pair[0].bytes.len() as u64 <= pair[1].addr, "no overlap");
        }
        for b in &t.blobs[1..] {
            assert_eq!(b.addr % 8, 0, "{} 8-byte aligned", b.signature_name());
        }
        let last = t.blobs.last().unwrap();
        assert!(last.addr + last.bytes.len() as u64 <= REGION.end);
    }

    #[test]
    fn checksums_and_lengths() {
        let t = built();
        for b in &t.blobs {
            assert_eq!(byte_sum(&b.bytes), 0, "{} checksum", b.signature_name());
            if b.signature == RSDP_SIGNATURE {
                assert_eq!(byte_sum(&b.bytes[..20]), 0, "RSDP first checksum");
                assert_eq!(le_u32(&b.bytes, 20) as usize, b.bytes.len());
            } else {
                assert_eq!(&b.bytes[0..4], &b.signature, "header signature");
                assert_eq!(le_u32(&b.bytes, 4) as usize, b.bytes.len(), "{} length", b.signature_name());
            }
        }
    }

    #[test]
    fn pointers_chain() {
        let t = built();
        let rsdp = blob(&t, b"RSDP");
        let xsdt = blob(&t, b"XSDT");
        let fadt = blob(&t, b"FACP");
        let dsdt = blob(&t, b"DSDT");
        let madt = blob(&t, b"APIC");
        assert_eq!(le_u64(&rsdp.bytes, 24), xsdt.addr, "RSDP -> XSDT");
        assert_eq!(xsdt.bytes.len(), 36 + 2 * 8);
        assert_eq!(le_u64(&xsdt.bytes, 36), fadt.addr, "XSDT[0] -> FADT");
        assert_eq!(le_u64(&xsdt.bytes, 44), madt.addr, "XSDT[1] -> MADT");
        assert_eq!(le_u64(&fadt.bytes, 140), dsdt.addr, "FADT X_DSDT -> DSDT");
    }

    #[test]
    fn mcfg_listed_after_madt_with_pci_roots() {
        let mut p = sample_platform();
        p.pci_roots.push(sample_pci_root());
        let t = build(&p, REGION).unwrap();
        let sigs: Vec<String> = t.blobs.iter().map(Blob::signature_name).collect();
        assert_eq!(sigs, ["RSDP", "XSDT", "FACP", "DSDT", "APIC", "MCFG"]);
        let xsdt = blob(&t, b"XSDT");
        assert_eq!(xsdt.bytes.len(), 36 + 3 * 8);
        assert_eq!(le_u64(&xsdt.bytes, 44), blob(&t, b"APIC").addr, "XSDT[1] -> MADT");
        assert_eq!(le_u64(&xsdt.bytes, 52), blob(&t, b"MCFG").addr, "XSDT[2] -> MCFG");
        let mcfg = &blob(&t, b"MCFG").bytes;
        assert_eq!(byte_sum(mcfg), 0);
        assert_eq!(le_u64(mcfg, 44), 0xb000_0000);
        assert_eq!(t.blobs.iter().filter(|b| b.signature == *b"MCFG").count(), 1);
    }

    #[test]
    fn viot_listed_last_when_there_is_an_iommu() {
        let mut p = sample_platform();
        p.pci_roots.push(sample_pci_root());
        p.viot = Some(Viot {
            iommu: ViotIommu::Pci { segment: 0, bdf: 0x20 },
            pci_ranges: vec![ViotPciRange {
                segment: 0,
                bdf_start: 0x08,
                bdf_end: 0x17,
                endpoint_start: 0x08,
            }],
            mmio_endpoints: Vec::new(),
        });
        let t = build(&p, REGION).unwrap();
        let sigs: Vec<String> = t.blobs.iter().map(Blob::signature_name).collect();
        assert_eq!(sigs, ["RSDP", "XSDT", "FACP", "DSDT", "APIC", "MCFG", "VIOT"]);
        let xsdt = blob(&t, b"XSDT");
        assert_eq!(xsdt.bytes.len(), 36 + 4 * 8);
        assert_eq!(le_u64(&xsdt.bytes, 60), blob(&t, b"VIOT").addr, "XSDT[3] -> VIOT");
        let viot = blob(&t, b"VIOT");
        assert_eq!(viot.addr % 8, 0);
        assert_eq!(viot.bytes.len(), 48 + 16 + 24);
        assert_eq!(byte_sum(&viot.bytes), 0);

        // Errors propagate.
        p.viot.as_mut().unwrap().pci_ranges[0].bdf_end = 0x20;
        assert!(matches!(build(&p, REGION), Err(Error::ViotIommuInOwnScope { .. })));
    }

    #[test]
    fn dmar_listed_last_when_there_are_vtd_units() {
        use crate::description::{Dmar, DmarScope, DmarUnit};
        let mut p = sample_platform();
        p.pci_roots.push(sample_pci_root());
        p.dmar = Some(Dmar {
            host_address_width: 48,
            units: vec![DmarUnit {
                segment: 0,
                register_base: 0xfed9_0000,
                scope: DmarScope::Endpoints(vec![0x08]),
            }],
        });
        let t = build(&p, REGION).unwrap();
        let sigs: Vec<String> = t.blobs.iter().map(Blob::signature_name).collect();
        assert_eq!(sigs, ["RSDP", "XSDT", "FACP", "DSDT", "APIC", "MCFG", "DMAR"]);
        let xsdt = blob(&t, b"XSDT");
        assert_eq!(xsdt.bytes.len(), 36 + 4 * 8);
        assert_eq!(le_u64(&xsdt.bytes, 60), blob(&t, b"DMAR").addr, "XSDT[3] -> DMAR");
        let dmar = blob(&t, b"DMAR");
        assert_eq!(dmar.bytes.len(), 48 + 16 + 8);
        assert_eq!(byte_sum(&dmar.bytes), 0);

        // Errors propagate.
        p.dmar.as_mut().unwrap().units[0].segment = 3;
        assert!(matches!(build(&p, REGION), Err(Error::DmarSegmentNotRoot(3))));
    }

    #[test]
    fn pci_errors_propagate() {
        let mut p = sample_platform();
        p.pci_roots.push(sample_pci_root());
        p.pci_roots[0].bus_end = 0;
        p.pci_roots[0].bus_start = 1;
        assert!(matches!(build(&p, REGION), Err(Error::PciBusRange { segment: 0, start: 1, end: 0 })));
    }

    #[test]
    fn madt_lists_each_cpu() {
        let mut p = sample_platform();
        p.cpus = vec![0, 1, 2, 3, 8, 9];
        let t = build(&p, REGION).unwrap();
        let madt = &blob(&t, b"APIC").bytes;
        let mut ids = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            if madt[at] == 0 {
                ids.push(madt[at + 3]);
            }
            at += usize::from(madt[at + 1]);
        }
        assert_eq!(ids, p.cpus);
    }

    /// The processor UIDs of the MADT's processor structures (Processor Local APIC, type 0, and
    /// Processor Local x2APIC, type 9) and of its NMI structures (Local APIC NMI, type 4, and
    /// Local x2APIC NMI, type 0xa), whose "all processors" UID comes back as `None` (ACPI 6.5
    /// sections 5.2.12.2, 5.2.12.7, 5.2.12.12, 5.2.12.13).
    fn madt_uids(madt: &[u8]) -> (Vec<u32>, Vec<Option<u32>>) {
        let (mut processors, mut nmis) = (Vec::new(), Vec::new());
        let mut at = 44;
        while at < madt.len() {
            let s = &madt[at..at + usize::from(madt[at + 1])];
            match s[0] {
                0 => processors.push(u32::from(s[2])),
                9 => processors.push(le_u32(s, 8)),
                4 => nmis.push((s[2] != 0xff).then_some(u32::from(s[2]))),
                0xa => nmis.push(Some(le_u32(s, 4)).filter(|&uid| uid != u32::MAX)),
                _ => {}
            }
            at += s.len().max(2);
        }
        (processors, nmis)
    }

    /// ACPI 6.5 section 5.2.12.2: every processor structure of the MADT names, by its ACPI
    /// Processor UID, a processor device (`ACPI0007`, section 8.4) of the namespace with that
    /// `_UID`; so does every NMI structure that is not for all processors. What fwts checks as
    /// MADTLAPICUidMismatch and MADTLAPICNMIUidMismatch, read from the bytes of both tables.
    #[test]
    fn every_madt_processor_uid_is_a_processor_device() {
        for count in [1usize, 2, 8, 255] {
            let mut p = sample_platform();
            p.pci_roots.push(sample_pci_root());
            // Spread APIC IDs where they fit, so a UID taken from the APIC ID would be caught.
            p.cpus = if count <= 127 {
                (0..count).map(|i| u8::try_from(2 * i + 1).unwrap()).collect()
            } else {
                (0..count).map(|i| u8::try_from(count - 1 - i).unwrap()).collect()
            };
            let t = build(&p, REGION).unwrap();
            let (processors, nmis) = madt_uids(&blob(&t, b"APIC").bytes);
            assert_eq!(processors.len(), count, "{count} CPUs: one MADT processor structure each");
            assert!(!nmis.is_empty(), "{count} CPUs: the MADT declares LINT1 NMIs");

            let devices = aml_devices(&blob(&t, b"DSDT").bytes);
            let processor_devices: Vec<&AmlDevice> =
                devices.iter().filter(|d| d.hid.as_deref() == Some("ACPI0007")).collect();
            for d in &processor_devices {
                assert!(d.path.starts_with("\\_SB_."), "{count} CPUs: processor outside \\_SB: {d:?}");
            }
            let mut device_uids: Vec<u64> =
                processor_devices.iter().map(|d| d.uid.unwrap_or_else(|| panic!("no _UID: {d:?}"))).collect();
            device_uids.sort_unstable();
            let distinct = device_uids.len();
            device_uids.dedup();
            assert_eq!(device_uids.len(), distinct, "{count} CPUs: processor _UIDs are unique");
            assert_eq!(distinct, count, "{count} CPUs: one processor device each");

            for uid in processors.iter().copied().chain(nmis.iter().flatten().copied()) {
                assert!(
                    device_uids.binary_search(&u64::from(uid)).is_ok(),
                    "{count} CPUs: MADT processor UID {uid} has no ACPI0007 device; devices: {devices:?}"
                );
            }
        }
    }

    #[test]
    fn rsdp_rounded_up_to_16() {
        let t = build(&sample_platform(), 0xe_0008..0x10_0000).unwrap();
        assert_eq!(t.rsdp_addr, 0xe_0010);
    }

    #[test]
    fn region_too_small() {
        let t = built();
        let last = t.blobs.last().unwrap();
        let needed = last.addr + last.bytes.len() as u64 - REGION.start;
        assert!(build(&sample_platform(), REGION.start..REGION.start + needed).is_ok(), "exact fit");
        let err = build(&sample_platform(), REGION.start..REGION.start + needed - 1).unwrap_err();
        assert!(matches!(err, Error::DoesNotFit { ref table, .. } if table == "APIC"), "{err}");
        let err = build(&sample_platform(), 0xe_0000..0xe_0010).unwrap_err();
        assert!(matches!(err, Error::DoesNotFit { ref table, .. } if table == "RSDP"), "{err}");
    }

    #[test]
    fn many_cpus_still_fit_the_bios_area() {
        let mut p = sample_platform();
        p.cpus = (0..=254).collect();
        assert!(build(&p, REGION).is_ok());
    }

    #[test]
    fn description_errors_propagate() {
        let mut p = sample_platform();
        p.sleep.s5_slp_typ = 9;
        assert!(matches!(build(&p, REGION), Err(Error::SlpTypOutOfRange(9))));
        let mut p = sample_platform();
        p.cpus.clear();
        assert!(matches!(build(&p, REGION), Err(Error::NoCpus)));
    }
}
