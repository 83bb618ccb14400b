use super::*;

fn faulting() -> Guest {
    let g = Guest::new();
    g.context_translate();
    g.enable();
    g
}

#[test]
fn the_fault_log_is_bounded_and_overflow_is_reported() {
    let g = faulting();
    g.w32(FECTL, 0);
    for i in 0..FAULT_RECORD_COUNT as u64 + 3 {
        assert!(g.dma_read(SID, 0x10_0000 * (i + 1), 4).is_err());
    }
    let fsts = g.r32(FSTS);
    assert_ne!(fsts & FSTS_PFO, 0);
    assert_ne!(fsts & FSTS_PPF, 0);
    assert_eq!((fsts >> 8) & 0xff, 0, "FRI: the oldest pending record");
    for i in 0..FAULT_RECORD_COUNT as u64 {
        assert_eq!(g.record(i).0, 0x10_0000 * (i + 1), "record {i} holds the fault that came first");
    }
    // One event for the first fault; the others came while one was pending.
    assert_eq!(g.msis.take().len(), 1);
    // Software clears as Linux's dmar_fault does: each F, then PFO.
    for i in 0..FAULT_RECORD_COUNT as u64 {
        g.w32(FAULT_RECORDS + 16 * i + 12, 1 << 31);
    }
    g.w32(FSTS, FSTS_PFO | FSTS_PPF);
    assert_eq!(g.r32(FSTS), 0);
    assert_eq!(g.record(0).1, 0);
    // Logging works again, with a new event.
    assert!(g.dma_read(SID, 0x5000, 4).is_err());
    assert_eq!(g.r32(FSTS) & FSTS_PPF, FSTS_PPF);
    assert_eq!((g.r32(FSTS) >> 8) & 0xff, 0, "the record after the last written, wrapped");
    assert_eq!(g.msis.take().len(), 1);
}

#[test]
fn a_masked_fault_event_is_sent_when_unmasked() {
    let g = faulting();
    g.w32(FEDATA, 0x22);
    g.w32(FEADDR, 0xfee0_1000);
    assert!(g.dma_read(SID, 0x1000, 4).is_err());
    assert!(g.msis.take().is_empty());
    assert_eq!(g.r32(FECTL), EVENT_IM | EVENT_IP);
    g.w32(FECTL, 0);
    assert_eq!(g.msis.take(), vec![(0xfee0_1000, 0x22)]);
    assert_eq!(g.r32(FECTL), 0);
}

#[test]
fn writing_the_low_half_of_a_record_does_not_clear_it() {
    let g = faulting();
    assert!(g.dma_read(SID, 0x1000, 4).is_err());
    g.w32(FAULT_RECORDS + 8, 0xffff_ffff);
    g.w64(FAULT_RECORDS, 0);
    assert_ne!(g.record(0).1 & 1 << 63, 0);
    g.w64(FAULT_RECORDS + 8, 1 << 63);
    assert_eq!(g.record(0).1, 0);
}

#[test]
fn a_write_fault_records_type_write() {
    let mut g = faulting();
    g.map(0x1000, DATA, 1, R);
    assert!(g.dma_write(SID, 0x1004, &[1]).is_err());
    let (lo, hi) = g.record(0);
    assert_eq!(lo, 0x1000);
    assert_eq!(hi & 1 << 62, 0);
    assert_eq!((hi >> 32) & 0xff, 5);
}
