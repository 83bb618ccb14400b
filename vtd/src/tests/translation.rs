use super::*;
use crate::FaultReason;

fn translating() -> Guest {
    let g = Guest::new();
    g.context_translate();
    g.enable();
    g
}

#[test]
fn translates_4k_2m_and_1g_pages() {
    let mut g = translating();
    g.map(0x1_0000_0000, DATA, 1, RW);
    g.map(0x2_0000_0000, DATA, 2, R);
    g.map(0x40_0000_0000, 0, 3, RW);
    assert_eq!(g.dma_read(SID, 0x1_0000_0010, 32).unwrap(), g.phys(DATA + 0x10, 32));
    assert_eq!(g.dma_read(SID, 0x2_0000_0000 + 0x123, 64).unwrap(), g.phys(DATA + 0x123, 64));
    assert_eq!(g.dma_read(SID, 0x40_0000_0000 + DATA + 0x5000, 16).unwrap(), g.phys(DATA + 0x5000, 16));
    g.dma_write(SID, 0x1_0000_0100, &[0xab; 8]).unwrap();
    assert_eq!(g.phys(DATA + 0x100, 8), vec![0xab; 8]);
    let s = g.stats(SID);
    assert_eq!(s.domain, Some(DOMAIN));
    assert!(s.translations >= 4 && s.faults == 0, "{s:?}");
}

#[test]
fn an_access_across_pages_is_translated_page_by_page() {
    let mut g = translating();
    // Two IOVA-contiguous pages that are not contiguous in memory.
    g.map(0x1000, DATA + 0x3000, 1, RW);
    g.map(0x2000, DATA, 1, RW);
    let got = g.dma_read(SID, 0x1800, 0x1000).unwrap();
    let mut want = g.phys(DATA + 0x3800, 0x800);
    want.extend(g.phys(DATA, 0x800));
    assert_eq!(got, want);
}

#[test]
fn a_second_access_hits_the_iotlb_and_the_context_cache() {
    let mut g = translating();
    g.map(0x1000, DATA, 1, RW);
    g.dma_read(SID, 0x1000, 8).unwrap();
    g.dma_read(SID, 0x1008, 8).unwrap();
    let s = g.stats(SID);
    assert_eq!((s.translations, s.iotlb_misses, s.context_misses), (2, 1, 1), "{s:?}");
    g.map(0x2000, DATA, 1, RW);
    g.dma_read(SID, 0x2000, 8).unwrap();
    let s = g.stats(SID);
    assert_eq!((s.iotlb_misses, s.context_misses), (2, 1), "{s:?}");
}

#[test]
fn pass_through_context_uses_guest_physical_addresses() {
    let g = Guest::new();
    g.put(ROOT, CONTEXT | 1);
    g.set_context(SID, 0b10 << 2 | 1, 0b010 | 5 << 8);
    g.enable();
    assert_eq!(g.dma_read(SID, DATA + 0x42, 16).unwrap(), g.phys(DATA + 0x42, 16));
    assert_eq!(g.stats(SID).domain, Some(5));
}

#[test]
fn with_translation_off_dma_passes_untranslated_and_is_counted() {
    let g = Guest::new();
    assert_eq!(g.dma_read(SID, DATA, 16).unwrap(), g.phys(DATA, 16));
    assert_eq!(g.dma_read(SID, DATA + 8, 8).unwrap(), g.phys(DATA + 8, 8));
    let s = g.stats(SID);
    assert_eq!((s.untranslated, s.translations, s.faults), (2, 0, 0), "{s:?}");
    // Enabling translation drops the identity.
    g.enable();
    assert!(g.dma_read(SID, DATA, 16).is_err());
    assert_eq!(g.stats(SID).faults, 1);
}

#[test]
fn read_only_and_write_only_pages_refuse_the_other_access() {
    let mut g = translating();
    g.map(0x1000, DATA, 1, R);
    g.map(0x2000, DATA + 0x1000, 1, W);
    let before = g.phys(DATA, 0x2000);
    assert!(g.dma_write(SID, 0x1000, &[1; 4]).is_err());
    assert!(g.dma_read(SID, 0x2000, 4).is_err());
    assert!(g.dma_write(SID, 0x2000, &[1; 4]).is_ok());
    assert_eq!(g.phys(DATA, 0x1000), before[..0x1000]);
    let (_, hi0) = g.record(0);
    let (_, hi1) = g.record(1);
    assert_eq!((hi0 >> 32) & 0xff, FaultReason::NoWrite as u64);
    assert_eq!((hi1 >> 32) & 0xff, FaultReason::NoRead as u64);
}

#[test]
fn permissions_of_every_level_intersect() {
    let mut g = translating();
    let leaf = g.map(0x1000, DATA, 1, RW);
    let _ = leaf;
    // Make the PML4E read-only.
    let pml4e = g.pml4_entry();
    g.put(pml4e, g.get(pml4e) & !W);
    assert!(g.dma_read(SID, 0x1000, 4).is_ok());
    assert!(g.dma_write(SID, 0x1000, &[0; 4]).is_err());
}

impl Guest {
    fn pml4_entry(&self) -> u64 {
        TABLES
    }
}

/// Every fault condition of the walk, with the reason recorded.
#[test]
fn every_fault_reason() {
    type Setup = fn(&mut Guest) -> u64;
    let cases: &[(&str, Setup, FaultReason)] = &[
        (
            "root not present",
            |g| {
                g.put(ROOT, 0);
                0x1000
            },
            FaultReason::RootNotPresent,
        ),
        (
            "context not present",
            |g| {
                g.set_context(SID, 0, 0);
                0x1000
            },
            FaultReason::ContextNotPresent,
        ),
        (
            "context AW not supported",
            |g| {
                g.set_context(SID, TABLES | 1, 0b011 | 7 << 8);
                0x1000
            },
            FaultReason::ContextInvalid,
        ),
        (
            "context TT 01b (device-TLB)",
            |g| {
                g.set_context(SID, TABLES | 0b01 << 2 | 1, 0b010);
                0x1000
            },
            FaultReason::ContextInvalid,
        ),
        (
            "context TT 11b",
            |g| {
                g.set_context(SID, TABLES | 0b11 << 2 | 1, 0b010);
                0x1000
            },
            FaultReason::ContextInvalid,
        ),
        (
            "second-level pointer outside memory",
            |g| {
                g.set_context(SID, 0x7f_0000_0000 | 1, 0b010);
                0x1000
            },
            FaultReason::ContextInvalid,
        ),
        ("address beyond 48 bits", |_| 1 << 48, FaultReason::AddressBeyondWidth),
        ("not present", |_| 0x5000_0000, FaultReason::NoRead),
        (
            "paging entry outside memory",
            |g| {
                g.put(TABLES, 0x7f_0000_0000 | RW);
                0x1000
            },
            FaultReason::PagingEntryAccess,
        ),
        (
            "root table outside memory",
            |g| {
                g.w64(RTADDR, 0x7f_0000_0000);
                g.w32(GCMD, GCMD_TE | GCMD_SRTP);
                0x1000
            },
            FaultReason::RootTableAccess,
        ),
        (
            "root table with a non-legacy mode",
            |g| {
                g.w64(RTADDR, ROOT | 0b01 << 10);
                g.w32(GCMD, GCMD_TE | GCMD_SRTP);
                0x1000
            },
            FaultReason::RootTableAccess,
        ),
        (
            "context table outside memory",
            |g| {
                g.put(ROOT, 0x7f_0000_0000 | 1);
                0x1000
            },
            FaultReason::ContextTableAccess,
        ),
        (
            "root entry reserved low",
            |g| {
                g.put(ROOT, CONTEXT | 1 << 5 | 1);
                0x1000
            },
            FaultReason::RootReserved,
        ),
        (
            "root entry reserved high",
            |g| {
                g.put(ROOT + 8, 1);
                0x1000
            },
            FaultReason::RootReserved,
        ),
        (
            "root entry address above the width",
            |g| {
                g.put(ROOT, CONTEXT | 1 << 50 | 1);
                0x1000
            },
            FaultReason::RootReserved,
        ),
        (
            "context entry reserved low",
            |g| {
                g.set_context(SID, TABLES | 1 << 4 | 1, 0b010);
                0x1000
            },
            FaultReason::ContextReserved,
        ),
        (
            "context entry reserved high",
            |g| {
                g.set_context(SID, TABLES | 1, 0b010 | 1 << 40);
                0x1000
            },
            FaultReason::ContextReserved,
        ),
        (
            "PML4E page-size bit",
            |g| {
                g.put(TABLES, g.get(TABLES) | PS);
                0x1000
            },
            FaultReason::PagingEntryReserved,
        ),
        (
            "PTE address above the width",
            |g| {
                let at = g.map(0x1000, DATA | 1 << 49, 1, RW);
                let _ = at;
                0x1000
            },
            FaultReason::PagingEntryReserved,
        ),
        (
            "2 MiB page not aligned",
            |g| {
                g.map(0x20_0000, DATA + 0x1000, 2, RW);
                0x20_0000
            },
            FaultReason::PagingEntryReserved,
        ),
        (
            "1 GiB page not aligned",
            |g| {
                g.map(0x4000_0000, 0x20_0000, 3, RW);
                0x4000_0000
            },
            FaultReason::PagingEntryReserved,
        ),
    ];
    for &(name, setup, reason) in cases {
        let mut g = translating();
        g.map(0x1000, DATA, 1, RW);
        g.w32(FEDATA, 0x31);
        g.w32(FEADDR, 0xfee0_0000);
        g.w32(FECTL, 0);
        let iova = setup(&mut g);
        let before = snapshot(&g.mem);
        assert!(g.dma_read(SID, iova, 8).is_err(), "{name}: the access must fail");
        assert_eq!(snapshot(&g.mem), before, "{name}: memory changed");
        let (lo, hi) = g.record(0);
        assert_eq!((hi >> 32) & 0xff, reason as u64, "{name}");
        assert_eq!(hi & 0xffff, u64::from(SID), "{name}");
        assert_ne!(hi & 1 << 63, 0, "{name}: F");
        assert_ne!(hi & 1 << 62, 0, "{name}: a read (T = 1)");
        assert_eq!(lo, iova & !0xfff, "{name}");
        assert_eq!(g.r32(FSTS) & (FSTS_PPF | 0xff00), FSTS_PPF, "{name}: PPF, FRI 0");
        assert_eq!(g.msis.take(), vec![(0xfee0_0000, 0x31)], "{name}: one fault event");
        assert_eq!(g.stats(SID).faults, 1, "{name}");
    }
}

#[test]
fn snoop_bit_is_reserved_without_snoop_control() {
    for coherent in [true, false] {
        let mut g = Guest::with(VtdConfig { coherent, ..VtdConfig::default() });
        g.context_translate();
        g.enable();
        g.map(0x1000, DATA, 1, RW | 1 << 11);
        assert_eq!(g.dma_read(SID, 0x1000, 8).is_ok(), coherent);
    }
}

#[test]
fn fault_processing_disabled_blocks_without_recording() {
    let mut g = translating();
    g.set_context(SID, TABLES | 1 << 1 | 1, 0b010 | 7 << 8);
    g.map(0x1000, DATA, 1, R);
    assert!(g.dma_write(SID, 0x1000, &[0; 4]).is_err());
    assert_eq!(g.r32(FSTS), 0);
    assert_eq!(g.stats(SID).faults, 1);
}

#[test]
fn an_access_wrapping_past_2_64_faults() {
    let g = translating();
    assert!(g.dma_read(SID, u64::MAX - 3, 8).is_err());
    let (_, hi) = g.record(0);
    assert_eq!((hi >> 32) & 0xff, FaultReason::AddressBeyondWidth as u64);
}
