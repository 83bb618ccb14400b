//! The threads' hot pages in front of a source ID's IOTLB: small repeated
//! accesses are served from them and counted; every invalidation that
//! covers a hot page (page, domain or global IOTLB invalidation, through
//! the registers or the queue; context-cache invalidation; a new root
//! table; translation turned off) makes the next access through it see
//! the guest's tables, in every thread; one elsewhere keeps it.

use std::sync::mpsc;
use std::sync::Arc;

use dmavm_translation::{hot_pages, HotPageSource, TranslatingEndpoint};

use super::*;

fn source(g: &Guest) -> Arc<HotPageSource> {
    g.unit.endpoint(SID).hot_pages().clone()
}

/// Reads 8 bytes at `iova` until this thread holds its page hot (the
/// first access walks, the second hits the IOTLB and makes it hot).
fn make_hot(g: &Guest, iova: u64) {
    for _ in 0..2 {
        assert_eq!(g.dma_read(SID, iova, 8).unwrap(), g.phys(DATA + (iova & 0xfff), 8));
    }
    assert!(hot_pages::holds(&source(g), iova & !0xfff));
}

#[test]
fn small_repeated_accesses_are_served_from_their_hot_page_and_counted() {
    let g = mapped();
    make_hot(&g, 0x1000);
    let before = g.stats(SID);
    let tm = g.memory(SID);
    for offset in [0x10, 0x800, 0xff8] {
        let v: u64 = tm.read_obj(GuestAddress(0x1000 + offset)).unwrap();
        assert_eq!(v.to_le_bytes().to_vec(), g.phys(DATA + offset, 8));
    }
    tm.write_obj(0xa5u8, GuestAddress(0x1020)).unwrap();
    assert_eq!(g.phys(DATA + 0x20, 1), vec![0xa5]);
    let after = g.stats(SID);
    assert_eq!(after.translations, before.translations + 4, "hot translations are counted");
    assert_eq!(after.iotlb_misses, before.iotlb_misses);
    // A large access does not make its page hot, and is still served.
    assert_eq!(g.dma_read(SID, 0x2000, 0x1000).unwrap(), g.phys(DATA + 0x1000, 0x1000));
    assert_eq!(g.dma_read(SID, 0x2000, 0x1000).unwrap(), g.phys(DATA + 0x1000, 0x1000));
    assert!(!hot_pages::holds(&source(&g), 0x2000));
}

/// One way the guest removes a translation, by name.
type Invalidation = (&'static str, Box<dyn Fn(&Guest)>);

/// Each way the guest removes the translation of IOVA 0x1000, applied to
/// a hot page whose PTE it cleared first.
fn invalidations() -> Vec<Invalidation> {
    vec![
        (
            "register page-selective",
            Box::new(|g: &Guest| {
                g.w64(IVA, 0x1000);
                g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
            }),
        ),
        (
            "register domain",
            Box::new(|g: &Guest| g.w64(IOTLB, IOTLB_IVT | 0b10 << 60 | u64::from(DOMAIN) << 32)),
        ),
        ("register global", Box::new(|g: &Guest| g.w64(IOTLB, IOTLB_IVT | 0b01 << 60))),
        (
            "queued page-selective",
            Box::new(|g: &Guest| {
                g.enable_queue();
                g.submit(&[iotlb_pages(DOMAIN, 0x1000, 0), wait(Some((STATUS, 1)), false)]);
                assert_eq!(g.get(STATUS) as u32, 1);
            }),
        ),
        ("context-cache global", Box::new(|g: &Guest| g.w64(CCMD, CCMD_ICC | 0b01 << 61))),
        ("root table latched", Box::new(|g: &Guest| g.w32(GCMD, GCMD_SRTP | GCMD_TE))),
    ]
}

#[test]
fn every_invalidation_covering_a_hot_page_makes_the_next_access_fault() {
    for (name, invalidate) in invalidations() {
        let g = mapped();
        make_hot(&g, 0x1000);
        g.unmap(0x1000);
        // Until the guest invalidates, the cached translation may serve
        // (as on hardware).
        assert!(g.dma_read(SID, 0x1010, 8).is_ok(), "{name}: before");
        invalidate(&g);
        assert!(g.dma_read(SID, 0x1010, 8).is_err(), "{name}: the hot page served a removed translation");
        assert!(!hot_pages::holds(&source(&g), 0x1000), "{name}");
    }
}

#[test]
fn turning_translation_off_drops_hot_pages_and_counts_accesses_apart() {
    let g = mapped();
    make_hot(&g, 0x1000);
    g.w32(GCMD, 0);
    assert_eq!(g.r32(GSTS) & GSTS_TES, 0);
    let before = g.stats(SID);
    // Untranslated: IOVA 0x1000 is guest-physical 0x1000, not DATA.
    for _ in 0..3 {
        assert_eq!(g.dma_read(SID, 0x1000, 8).unwrap(), g.phys(0x1000, 8));
    }
    let after = g.stats(SID);
    assert_eq!(after.untranslated, before.untranslated + 3);
    assert_eq!(after.translations, before.translations);
    assert!(!hot_pages::holds(&source(&g), 0x1000), "no hot pages while translation is off");
}

#[test]
fn an_invalidation_of_one_part_of_a_large_page_drops_its_hot_pages_elsewhere() {
    let g = mapped();
    for _ in 0..2 {
        assert_eq!(g.dma_read(SID, 0x2f_f010, 8).unwrap(), g.phys(DATA + 0xf_f010, 8));
    }
    assert!(hot_pages::holds(&source(&g), 0x2f_f000));
    // Replace the 2 MiB page by nothing, invalidate its first 4 KiB.
    let pml4e = g.get(TABLES);
    let pdpe = g.get(pml4e & !0xfff);
    g.put((pdpe & !0xfff) + 8, 0);
    g.w64(IVA, 0x20_0000);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    assert!(g.dma_read(SID, 0x2f_f010, 8).is_err());
}

#[test]
fn an_invalidation_elsewhere_keeps_the_hot_page() {
    let g = mapped();
    make_hot(&g, 0x1000);
    g.unmap(0x2000);
    g.w64(IVA, 0x2000);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    assert!(hot_pages::holds(&source(&g), 0x1000));
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    assert!(g.dma_read(SID, 0x2000, 8).is_err());
}

#[test]
fn an_invalidation_reaches_the_hot_pages_of_every_thread() {
    let g = Arc::new(mapped());
    let (ask, asked) = mpsc::channel::<()>();
    let (answer, answers) = mpsc::channel::<(bool, bool)>();
    let device = {
        let g = g.clone();
        std::thread::spawn(move || {
            let tm = g.memory(SID);
            while asked.recv().is_ok() {
                let served = tm.read_obj::<u64>(GuestAddress(0x1010)).is_ok();
                let held = hot_pages::holds(&source(&g), 0x1000);
                answer.send((served, held)).unwrap();
            }
        })
    };
    let step = || {
        ask.send(()).unwrap();
        answers.recv().unwrap()
    };
    step();
    assert_eq!(step(), (true, true), "the device thread holds the page hot");
    assert!(!hot_pages::holds(&source(&g), 0x1000), "this thread does not");
    g.unmap(0x1000);
    g.w64(IVA, 0x1000);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    assert_eq!(step(), (false, false), "the device thread's hot page went with the invalidation");
    drop(ask);
    device.join().unwrap();
}

#[test]
fn the_topmost_page_is_never_made_hot_and_invalidating_it_drops_the_cache() {
    let g = Guest::new();
    // Pass-through: every address translates to itself, the last page too.
    g.put(ROOT, CONTEXT | 1);
    g.put(ROOT + 8, 0);
    g.set_context(SID, 0b10 << 2 | 1, 2 | u64::from(DOMAIN) << 8);
    g.enable();
    let top = !0xfffu64;
    let tm = g.memory(SID);
    for _ in 0..3 {
        // Outside guest memory: the translation succeeds, the access fails.
        assert!(tm.read_obj::<u64>(GuestAddress(top)).is_err());
    }
    assert!(!hot_pages::holds(&source(&g), top));
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    // A page-selective invalidation of the last page: its end is 2^64.
    g.w64(IVA, top);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    assert_eq!(g.r64(IOTLB) & IOTLB_IVT, 0);
    let misses = g.stats(SID).iotlb_misses;
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    assert_eq!(g.stats(SID).iotlb_misses, misses + 1, "the whole IOTLB went");
}
