use super::*;

#[test]
fn capabilities_report_what_the_model_implements() {
    let g = Guest::new();
    let cap = g.r64(CAP);
    assert_eq!(cap & 0x7, 6, "16-bit domain IDs");
    assert_eq!(cap & 1 << 4, 0, "no write-buffer flushing (RWBF)");
    assert_eq!(cap & 1 << 7, 0, "caching mode off");
    assert_eq!((cap >> 8) & 0x1f, 0b00100, "SAGAW: 4-level only");
    assert_eq!((cap >> 16) & 0x3f, 47, "MGAW: 48 bits");
    assert_eq!((cap >> 24) & 0x3ff, FAULT_RECORDS / 16, "FRO");
    assert_eq!((cap >> 34) & 0xf, 0b11, "SLLPS: 2 MiB and 1 GiB");
    assert_ne!(cap & 1 << 39, 0, "PSI");
    assert_eq!((cap >> 40) & 0xff, FAULT_RECORD_COUNT as u64 - 1, "NFR");
    assert_eq!((cap >> 48) & 0x3f, 18, "MAMV");
    let ecap = g.r64(ECAP);
    assert_eq!(ecap & 0b1, 1, "page-walk coherent");
    assert_ne!(ecap & 1 << 1, 0, "QI");
    assert_eq!(ecap & 1 << 2, 0, "no device-TLB");
    assert_eq!(ecap & 1 << 3, 0, "no interrupt remapping");
    assert_ne!(ecap & 1 << 6, 0, "pass-through");
    assert_ne!(ecap & 1 << 7, 0, "snoop control");
    assert_eq!((ecap >> 8) & 0x3ff, IVA / 16, "IRO");
    assert_eq!(g.r32(VER), 0x10);
}

#[test]
fn a_non_coherent_unit_clears_page_walk_coherency_and_snoop_control() {
    let g = Guest::with(VtdConfig { coherent: false, ..VtdConfig::default() });
    let ecap = g.r64(ECAP);
    assert_eq!(ecap & 1, 0);
    assert_eq!(ecap & 1 << 7, 0);
    assert_ne!(ecap & 1 << 1, 0);
}

#[test]
fn sixty_four_bit_registers_read_and_write_as_two_halves() {
    let g = Guest::new();
    let cap = g.r64(CAP);
    assert_eq!(u64::from(g.r32(CAP)) | u64::from(g.r32(CAP + 4)) << 32, cap);
    g.w32(RTADDR, 0x1234_5000);
    g.w32(RTADDR + 4, 0xab);
    assert_eq!(g.r64(RTADDR), 0xab_1234_5000);
    g.w32(RTADDR + 4, 0);
    assert_eq!(g.r64(RTADDR), 0x1234_5000);
    // Read-only registers ignore writes.
    g.w64(CAP, 0);
    g.w32(ECAP, 0);
    assert_eq!(g.r64(CAP), cap);
    // PMEN reads 0; a 16-bit or misaligned access reads 0 and is ignored.
    assert_eq!(g.r32(PMEN), 0);
    let mut two = [0xffu8; 2];
    g.unit.read(CAP, &mut two);
    assert_eq!(two, [0, 0]);
    let mut misaligned = [0xffu8; 8];
    g.unit.read(CAP + 4, &mut misaligned);
    assert_eq!(misaligned, [0; 8]);
    g.unit.write(RTADDR + 2, &[0xff; 4]);
    assert_eq!(g.r64(RTADDR), 0x1234_5000);
    // Beyond the register page.
    let mut beyond = [0xffu8; 4];
    g.unit.read(REGISTER_SPACE, &mut beyond);
    assert_eq!(beyond, [0; 4]);
}

#[test]
fn global_command_sets_each_status_and_status_follows() {
    let g = Guest::new();
    assert_eq!(g.r32(GSTS), 0);
    g.w64(RTADDR, ROOT);
    g.w32(GCMD, GCMD_SRTP);
    assert_eq!(g.r32(GSTS), GSTS_RTPS);
    // GCMD is write-only.
    assert_eq!(g.r32(GCMD), 0);
    g.w32(GCMD, GCMD_TE);
    assert_eq!(g.r32(GSTS), GSTS_RTPS | GSTS_TES);
    g.w32(GCMD, GCMD_TE | GCMD_QIE);
    assert_eq!(g.r32(GSTS), GSTS_RTPS | GSTS_TES | GSTS_QIES);
    g.w32(GCMD, GCMD_QIE);
    assert_eq!(g.r32(GSTS), GSTS_RTPS | GSTS_QIES);
    g.w32(GCMD, 0);
    assert_eq!(g.r32(GSTS), GSTS_RTPS);
}

#[test]
fn a_64_bit_write_to_a_pair_of_32_bit_registers_writes_both() {
    let g = Guest::new();
    g.w64(FEADDR, 0x1_fee0_0000);
    assert_eq!(g.r32(FEADDR), 0xfee0_0000);
    assert_eq!(g.r32(FEUADDR), 1);
    assert_eq!(g.r64(FEADDR), 0x1_fee0_0000);
}

#[test]
fn fault_and_completion_events_start_masked() {
    let g = Guest::new();
    assert_eq!(g.r32(FECTL), EVENT_IM);
    assert_eq!(g.r32(IECTL), EVENT_IM);
}
