//! Register offsets and bit fields of a VT-d remapping unit (VT-d 4.x,
//! chapter 11, "Register Descriptions"), and the capabilities this model
//! reports in CAP and ECAP.

use crate::config::VtdConfig;

/// Size of the register set: one 4 KiB page.
pub const REGISTER_SPACE: u64 = 0x1000;

pub(crate) const VER: u64 = 0x00;
pub(crate) const CAP: u64 = 0x08;
pub(crate) const ECAP: u64 = 0x10;
pub(crate) const GCMD: u64 = 0x18;
pub(crate) const GSTS: u64 = 0x1c;
pub(crate) const RTADDR: u64 = 0x20;
pub(crate) const CCMD: u64 = 0x28;
pub(crate) const FSTS: u64 = 0x34;
pub(crate) const FECTL: u64 = 0x38;
pub(crate) const FEDATA: u64 = 0x3c;
pub(crate) const FEADDR: u64 = 0x40;
pub(crate) const FEUADDR: u64 = 0x44;
pub(crate) const PMEN: u64 = 0x64;
pub(crate) const IQH: u64 = 0x80;
pub(crate) const IQT: u64 = 0x88;
pub(crate) const IQA: u64 = 0x90;
pub(crate) const ICS: u64 = 0x9c;
pub(crate) const IECTL: u64 = 0xa0;
pub(crate) const IEDATA: u64 = 0xa4;
pub(crate) const IEADDR: u64 = 0xa8;
pub(crate) const IEUADDR: u64 = 0xac;
pub(crate) const IQERCD: u64 = 0xb0;

/// Where the fault recording registers start (CAP.FRO, in 16-byte units).
pub(crate) const FAULT_RECORDS: u64 = 0x400;
/// Number of fault recording registers (CAP.NFR + 1).
pub const FAULT_RECORD_COUNT: usize = 8;
/// Where the IOTLB registers start (ECAP.IRO, in 16-byte units): the
/// Invalidate Address register, then the IOTLB Invalidate register.
pub(crate) const IVA: u64 = 0x500;
pub(crate) const IOTLB: u64 = IVA + 8;

/// VER: architecture version 1.0 (major in bits 7:4): the legacy-mode
/// remapping this model implements.
pub(crate) const VERSION: u32 = 0x10;

// GCMD / GSTS (11.4.4, 11.4.5).
pub(crate) const GCMD_TE: u32 = 1 << 31;
pub(crate) const GCMD_SRTP: u32 = 1 << 30;
pub(crate) const GCMD_QIE: u32 = 1 << 26;
pub(crate) const GSTS_TES: u32 = 1 << 31;
pub(crate) const GSTS_RTPS: u32 = 1 << 30;
pub(crate) const GSTS_QIES: u32 = 1 << 26;

/// RTADDR: root table address (bits 63:12) and translation table mode
/// (bits 11:10, 00 = legacy).
pub(crate) const RTADDR_ADDRESS: u64 = !0xfff;
pub(crate) const RTADDR_TTM_SHIFT: u32 = 10;

// CCMD (11.4.7).
pub(crate) const CCMD_ICC: u64 = 1 << 63;
pub(crate) const CCMD_CIRG_SHIFT: u32 = 61;
pub(crate) const CCMD_CAIG_SHIFT: u32 = 59;

// IOTLB register (11.4.8.1) and IVA (11.4.8.2).
pub(crate) const IOTLB_IVT: u64 = 1 << 63;
pub(crate) const IOTLB_IIRG_SHIFT: u32 = 60;
pub(crate) const IOTLB_IAIG_SHIFT: u32 = 57;
pub(crate) const IOTLB_DID_SHIFT: u32 = 32;

// FSTS (11.4.9.1) and the event control registers (11.4.9.2, 11.4.9.12).
pub(crate) const FSTS_PFO: u32 = 1 << 0;
pub(crate) const FSTS_PPF: u32 = 1 << 1;
pub(crate) const FSTS_IQE: u32 = 1 << 4;
pub(crate) const FSTS_ICE: u32 = 1 << 5;
pub(crate) const FSTS_ITE: u32 = 1 << 6;
pub(crate) const FSTS_FRI_SHIFT: u32 = 8;
pub(crate) const EVENT_IM: u32 = 1 << 31;
pub(crate) const EVENT_IP: u32 = 1 << 30;
pub(crate) const ICS_IWC: u32 = 1 << 0;

/// The queue address register: base (bits 63:12) and size (bits 2:0, the
/// queue is 2^QS 4 KiB pages). DW (bit 11) is reserved without scalable
/// mode: descriptors are 128 bits.
pub(crate) const IQA_ADDRESS: u64 = !0xfff;
pub(crate) const IQA_QS: u64 = 0x7;
/// IQH / IQT: descriptor offset (bits 18:4).
pub(crate) const IQ_OFFSET: u64 = 0x7_fff0;

/// Address width the unit translates (MGAW) and that its tables may point
/// into (host address width, the DMAR table's HAW + 1).
pub const ADDRESS_WIDTH: u32 = 48;
/// Largest address mask a page-selective invalidation may carry (CAP.MAMV):
/// 2^18 pages, 1 GiB, a whole large page of the largest size.
pub(crate) const MAX_ADDRESS_MASK: u64 = 18;

/// The capability register (11.4.2).
pub(crate) fn capability() -> u64 {
    let nd = 6; // 16-bit domain IDs
    let sagaw = 1 << 2; // 4-level (48-bit) tables only
    let mgaw = u64::from(ADDRESS_WIDTH - 1);
    let fro = FAULT_RECORDS / 16;
    let sllps = 0b11; // 2 MiB and 1 GiB second-level pages
    let psi = 1;
    let nfr = FAULT_RECORD_COUNT as u64 - 1;
    // RWBF, PLMR/PHMR, caching mode, ZLR, draining: all 0.
    nd | sagaw << 8 | mgaw << 16 | fro << 24 | sllps << 34 | psi << 39 | nfr << 40 | MAX_ADDRESS_MASK << 48
}

/// The extended capability register (11.4.3): queued invalidation and
/// pass-through always; page-walk coherency and snoop control only when
/// the unit is declared coherent (a unit that does not snoop the CPU's
/// caches cannot honour the SNP bit either). No device-TLB, no interrupt
/// remapping, no scalable mode.
pub(crate) fn extended_capability(config: &VtdConfig) -> u64 {
    let coherent = u64::from(config.coherent);
    let qi = 1;
    let pt = 1;
    let iro = IVA / 16;
    coherent | qi << 1 | pt << 6 | coherent << 7 | iro << 8
}
