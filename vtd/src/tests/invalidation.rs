use super::*;

#[test]
fn register_page_selective_invalidation_drops_the_page() {
    let g = mapped();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    assert!(g.dma_read(SID, 0x2000, 8).is_ok());
    g.unmap(0x1000);
    // Cached: the hardware may still use the old translation.
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.w64(IVA, 0x1000);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    let reg = g.r64(IOTLB);
    assert_eq!(reg & IOTLB_IVT, 0, "IVT clears on completion");
    assert_eq!((reg >> 57) & 0b11, 0b11, "IAIG: page-selective done");
    assert!(g.dma_read(SID, 0x1000, 8).is_err());
    // The other page stays cached.
    let misses = g.stats(SID).iotlb_misses;
    assert!(g.dma_read(SID, 0x2000, 8).is_ok());
    assert_eq!(g.stats(SID).iotlb_misses, misses);
    assert_eq!(g.stats(SID).invalidations, 1);
}

#[test]
fn invalidating_another_domain_keeps_the_translation() {
    let g = mapped();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.unmap(0x1000);
    g.w64(IOTLB, IOTLB_IVT | 0b10 << 60 | u64::from(DOMAIN + 1) << 32);
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.w64(IOTLB, IOTLB_IVT | 0b10 << 60 | u64::from(DOMAIN) << 32);
    assert!(g.dma_read(SID, 0x1000, 8).is_err());
}

#[test]
fn register_invalidation_in_32_bit_halves_runs_on_the_command_half() {
    let g = mapped();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.unmap(0x1000);
    let cmd = IOTLB_IVT | 0b01 << 60;
    g.w32(IOTLB, cmd as u32);
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.w32(IOTLB + 4, (cmd >> 32) as u32);
    assert!(g.dma_read(SID, 0x1000, 8).is_err());
}

#[test]
fn context_cache_invalidation_rereads_the_context_entry() {
    let g = mapped();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.set_context(SID, 0, 0);
    assert!(g.dma_read(SID, 0x1000, 8).is_ok(), "cached context entry");
    // Device-selective with a function mask covering function 0..7.
    g.w64(CCMD, CCMD_ICC | 0b11 << 61 | 0b11 << 32 | u64::from(SID | 5) << 16);
    let reg = g.r64(CCMD);
    assert_eq!(reg & CCMD_ICC, 0);
    assert_eq!((reg >> 59) & 0b11, 0b11);
    assert!(g.dma_read(SID, 0x1000, 8).is_err());
    assert_eq!((g.record(0).1 >> 32) & 0xff, 2);
}

#[test]
fn a_page_selective_invalidation_inside_a_large_page_drops_all_of_it() {
    let g = mapped();
    assert!(g.dma_read(SID, 0x20_0010, 8).is_ok());
    // Replace the 2 MiB page by nothing, invalidate one 4 KiB page of it.
    let pml4e = g.get(TABLES);
    let pdpe = g.get(pml4e & !0xfff);
    g.put((pdpe & !0xfff) + 8, 0);
    g.w64(IVA, 0x20_0000 + 0x5000);
    g.w64(IOTLB, IOTLB_IVT | 0b11 << 60 | u64::from(DOMAIN) << 32);
    assert!(g.dma_read(SID, 0x20_0010, 8).is_err());
}

#[test]
fn queued_invalidation_drops_the_page_and_the_wait_writes_its_status() {
    let g = mapped();
    g.enable_queue();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.unmap(0x1000);
    g.put(STATUS, 0);
    g.submit(&[iotlb_pages(DOMAIN, 0x1000, 0), wait(Some((STATUS, 1)), false)]);
    assert_eq!(g.get(STATUS) as u32, 1);
    assert_eq!(g.r64(IQH), g.r64(IQT));
    assert!(g.dma_read(SID, 0x1000, 8).is_err());
    g.submit(&[cc_global(), iotlb_global(), iotlb_domain(DOMAIN), wait(Some((STATUS, 2)), false)]);
    assert_eq!(g.get(STATUS) as u32, 2);
    assert_eq!(g.r32(FSTS), FSTS_PPF, "only the translation fault");
}

#[test]
fn register_invalidation_is_not_performed_while_the_queue_is_on() {
    let g = mapped();
    g.enable_queue();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    g.unmap(0x1000);
    g.w64(IOTLB, IOTLB_IVT | 0b01 << 60);
    assert_eq!((g.r64(IOTLB) >> 57) & 0b11, 0, "IAIG 0: not performed");
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
}

#[test]
fn wait_interrupt_is_sent_or_held_by_the_mask() {
    let g = mapped();
    g.w32(IEDATA, 0x55);
    g.w32(IEADDR, 0xfee0_2000);
    g.enable_queue();
    g.submit(&[wait(None, true)]);
    assert!(g.msis.take().is_empty(), "masked at reset");
    assert_eq!(g.r32(ICS), ICS_IWC);
    assert_eq!(g.r32(IECTL), EVENT_IM | EVENT_IP);
    g.w32(IECTL, 0);
    assert_eq!(g.msis.take(), vec![(0xfee0_2000, 0x55)]);
    // IWC still set: no new interrupt until software clears it.
    g.submit(&[wait(None, true)]);
    assert!(g.msis.take().is_empty());
    g.w32(ICS, ICS_IWC);
    assert_eq!(g.r32(ICS), 0);
    g.submit(&[wait(None, true)]);
    assert_eq!(g.msis.take(), vec![(0xfee0_2000, 0x55)]);
}

fn queue_error(g: &Guest, bad: [u64; 2], iqei: u64) {
    g.w32(FECTL, 0);
    g.put(STATUS, 0);
    let head = g.r64(IQH);
    let before_cache = g.stats(SID).invalidations;
    g.submit(&[bad, wait(Some((STATUS, 9)), false)]);
    assert_ne!(g.r32(FSTS) & FSTS_IQE, 0);
    assert_eq!(g.r64(IQERCD) & 0xf, iqei);
    assert_eq!(g.r64(IQH), head, "IQH on the bad descriptor");
    assert_eq!(g.get(STATUS), 0, "nothing after it ran");
    assert_eq!(g.stats(SID).invalidations, before_cache);
    assert_eq!(g.msis.take().len(), 1, "fault event");
    // Linux's recovery: replace the bad descriptor by the wait, clear IQE.
    g.put(QUEUE + head, wait(Some((STATUS, 9)), false)[0]);
    g.put(QUEUE + head + 8, STATUS);
    g.w32(FSTS, FSTS_IQE);
    assert_eq!(g.r32(FSTS) & FSTS_IQE, 0);
    assert_eq!(g.get(STATUS), 9);
    assert_eq!(g.r64(IQH), g.r64(IQT));
}

#[test]
fn invalid_descriptors_stop_the_queue_with_iqe() {
    let g = mapped();
    g.enable_queue();
    assert!(g.dma_read(SID, 0x1000, 8).is_ok());
    queue_error(&g, [0x3, 0], 3); // device-TLB: not supported
    queue_error(&g, [0x4, 0], 3); // interrupt entry cache: no IR
    queue_error(&g, [0x1 | 1 << 9, 0], 3); // type bits 11:9
    queue_error(&g, [0x1, 0], 4); // context, granularity 00
    queue_error(&g, [0x2, 0], 4); // IOTLB, granularity 00
    queue_error(&g, [0x1 | 1 << 4 | 1 << 60, 0], 4);
    queue_error(&g, [0x1 | 1 << 4, 1], 4);
    queue_error(&g, [0x2 | 1 << 4 | 1 << 40, 0], 4);
    queue_error(&g, [0x2 | 3 << 4, 1 << 8], 4);
    queue_error(&g, [0x5 | 1 << 12, 0], 4);
    queue_error(&g, [0x5 | 1 << 5, STATUS | 1], 4);
}

#[test]
fn a_tail_beyond_the_queue_is_an_error_and_changes_nothing() {
    let g = mapped();
    g.enable_queue();
    g.w32(FECTL, 0);
    g.w64(IQT, 0x1000);
    assert_ne!(g.r32(FSTS) & FSTS_IQE, 0);
    assert_eq!(g.r64(IQERCD) & 0xf, 1);
    assert_eq!(g.r64(IQH), 0);
    // Reserved low bits of IQT are dropped.
    g.w64(IQT, 0);
    g.w32(FSTS, FSTS_IQE);
    g.w64(IQT, 0x7);
    assert_eq!(g.r64(IQT), 0);
    assert_eq!(g.r32(FSTS) & FSTS_IQE, 0);
}

#[test]
fn a_queue_outside_memory_is_a_fetch_error() {
    let g = mapped();
    g.w64(IQT, 0);
    // The largest queue (128 pages), outside guest memory.
    g.w64(IQA, 0x7f_0000_0000 | 7);
    g.w32(GCMD, g.gcmd() | GCMD_QIE);
    g.w64(IQT, 0x7_fff0);
    assert_ne!(g.r32(FSTS) & FSTS_IQE, 0);
    assert_eq!(g.r64(IQERCD) & 0xf, 2);
    assert_eq!(g.r64(IQH), 0);
}

#[test]
fn a_full_queue_of_waits_runs_once_and_wraps() {
    let g = mapped();
    g.enable_queue();
    // 255 descriptors (a full 4 KiB queue less one), twice around.
    for round in 0..2u32 {
        let waits: Vec<_> = (0..255).map(|i| wait(Some((STATUS, round * 1000 + i)), false)).collect();
        g.submit(&waits);
        assert_eq!(g.get(STATUS) as u32, round * 1000 + 254);
        assert_eq!(g.r64(IQH), g.r64(IQT));
    }
}

#[test]
fn disabling_the_queue_resets_its_head() {
    let g = mapped();
    g.enable_queue();
    g.submit(&[wait(None, false)]);
    assert_eq!(g.r64(IQH), 0x10);
    g.w32(GCMD, g.gcmd() & !GCMD_QIE);
    assert_eq!(g.r32(GSTS) & GSTS_QIES, 0);
    assert_eq!(g.r64(IQH), 0);
}
