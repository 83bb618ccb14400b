//! Unit tests: a guest-built root table, context table and second-level
//! tables in test memory, driven through the registers as Linux's
//! intel-iommu driver drives them.

// Test setup that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults;
mod hot_pages;
mod invalidation;
mod registers;
mod translation;

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::registers::*;
use crate::{translated_memory, FaultInterrupt, VtdConfig, VtdMemory, VtdUnit};

/// 16 MiB of guest memory.
pub(crate) const MEM_SIZE: u64 = 0x100_0000;
pub(crate) const ROOT: u64 = 0x10_0000;
pub(crate) const CONTEXT: u64 = 0x10_1000;
/// Where the tests' page-table pages come from.
pub(crate) const TABLES: u64 = 0x20_0000;
pub(crate) const QUEUE: u64 = 0x40_0000;
pub(crate) const STATUS: u64 = 0x50_0000;
/// Data pages.
pub(crate) const DATA: u64 = 0x60_0000;

/// The source ID the tests translate for: 00:03.0.
pub(crate) const SID: u16 = 3 << 3;
pub(crate) const DOMAIN: u16 = 7;

/// MSIs the unit sent.
#[derive(Debug, Default)]
pub(crate) struct Msis(pub(crate) Mutex<Vec<(u64, u32)>>);

impl FaultInterrupt for Msis {
    fn send_msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

impl Msis {
    pub(crate) fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub(crate) struct Guest {
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) unit: VtdUnit,
    pub(crate) msis: Arc<Msis>,
    next_table: u64,
    pml4: u64,
}

pub(crate) const R: u64 = 1;
pub(crate) const W: u64 = 2;
pub(crate) const RW: u64 = 3;
pub(crate) const PS: u64 = 1 << 7;

impl Guest {
    pub(crate) fn new() -> Self {
        Self::with(VtdConfig::default())
    }

    pub(crate) fn with(config: VtdConfig) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
        for page in 0..MEM_SIZE / 0x1000 {
            let a = page * 0x1000;
            if a >= DATA {
                let fill: Vec<u8> =
                    (0..0x1000u64).map(|i| ((a + i) / 0x1000 % 251) as u8 ^ (i as u8)).collect();
                mem.write_slice(&fill, GuestAddress(a)).unwrap();
            }
        }
        let msis = Arc::new(Msis::default());
        let unit = VtdUnit::new(config, mem.clone(), msis.clone());
        let mut g = Self { mem, unit, msis, next_table: TABLES, pml4: 0 };
        g.pml4 = g.table();
        g
    }

    pub(crate) fn r32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.unit.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub(crate) fn r64(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.unit.read(offset, &mut b);
        u64::from_le_bytes(b)
    }

    pub(crate) fn w32(&self, offset: u64, v: u32) {
        self.unit.write(offset, &v.to_le_bytes());
    }

    pub(crate) fn w64(&self, offset: u64, v: u64) {
        self.unit.write(offset, &v.to_le_bytes());
    }

    /// A zeroed table page.
    pub(crate) fn table(&mut self) -> u64 {
        let t = self.next_table;
        self.next_table += 0x1000;
        self.mem.write_slice(&[0u8; 0x1000], GuestAddress(t)).unwrap();
        t
    }

    pub(crate) fn put(&self, address: u64, value: u64) {
        self.mem.write_obj(value, GuestAddress(address)).unwrap();
    }

    pub(crate) fn get(&self, address: u64) -> u64 {
        self.mem.read_obj(GuestAddress(address)).unwrap()
    }

    /// Root entry of bus 0 present, context entry of [`SID`] translating
    /// through the tables in [`DOMAIN`].
    pub(crate) fn context_translate(&self) {
        self.put(ROOT, CONTEXT | 1);
        self.put(ROOT + 8, 0);
        self.set_context(SID, self.pml4 | 1, 0b010 | u64::from(DOMAIN) << 8);
    }

    pub(crate) fn set_context(&self, sid: u16, lo: u64, hi: u64) {
        let at = CONTEXT + u64::from(sid & 0xff) * 16;
        self.put(at, lo);
        self.put(at + 8, hi);
    }

    /// Maps `iova` to `phys` with a page of `level` (1: 4 KiB, 2: 2 MiB,
    /// 3: 1 GiB) and `bits` (R/W and any others) in the leaf.
    pub(crate) fn map(&mut self, iova: u64, phys: u64, level: u32, bits: u64) -> u64 {
        let mut table = self.pml4;
        for l in (level + 1..=4).rev() {
            let at = table + ((iova >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
            let entry = self.get(at);
            table = if entry & 3 != 0 {
                entry & !0xfff
            } else {
                let t = self.table();
                self.put(at, t | RW);
                t
            };
        }
        let at = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        self.put(at, phys | bits | if level > 1 { PS } else { 0 });
        at
    }

    /// Clears the PTE of `iova`, a 4 KiB mapping of [`Self::map`]: the
    /// unmap of a driver, before it invalidates.
    pub(crate) fn unmap(&self, iova: u64) {
        let pml4e = self.get(self.pml4 + ((iova >> 39) & 0x1ff) * 8);
        let pdpe = self.get((pml4e & !0xfff) + ((iova >> 30) & 0x1ff) * 8);
        let pde = self.get((pdpe & !0xfff) + ((iova >> 21) & 0x1ff) * 8);
        self.put((pde & !0xfff) + ((iova >> 12) & 0x1ff) * 8, 0);
    }

    /// Latches the root table and enables translation, as Linux does.
    pub(crate) fn enable(&self) {
        self.w64(RTADDR, ROOT);
        self.w32(GCMD, GCMD_SRTP);
        assert_ne!(self.r32(GSTS) & GSTS_RTPS, 0);
        self.w32(GCMD, GCMD_TE);
        assert_ne!(self.r32(GSTS) & GSTS_TES, 0);
    }

    pub(crate) fn memory(&self, sid: u16) -> VtdMemory {
        translated_memory(self.mem.clone(), self.unit.endpoint(sid))
    }

    /// Reads `len` bytes at `iova` through `sid`'s translation.
    pub(crate) fn dma_read(
        &self,
        sid: u16,
        iova: u64,
        len: usize,
    ) -> Result<Vec<u8>, vm_memory::GuestMemoryError> {
        let mut v = vec![0u8; len];
        self.memory(sid).read_slice(&mut v, GuestAddress(iova)).map(|_| v)
    }

    pub(crate) fn dma_write(
        &self,
        sid: u16,
        iova: u64,
        data: &[u8],
    ) -> Result<(), vm_memory::GuestMemoryError> {
        self.memory(sid).write_slice(data, GuestAddress(iova))
    }

    pub(crate) fn phys(&self, address: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(address)).unwrap();
        v
    }

    /// The fault record `index` as (low, high) words.
    pub(crate) fn record(&self, index: u64) -> (u64, u64) {
        (self.r64(FAULT_RECORDS + 16 * index), self.r64(FAULT_RECORDS + 16 * index + 8))
    }

    /// Sets up a 4 KiB queue at [`QUEUE`] and enables it.
    pub(crate) fn enable_queue(&self) {
        self.w64(IQT, 0);
        self.w64(IQA, QUEUE);
        self.w32(GCMD, self.gcmd() | GCMD_QIE);
        assert_ne!(self.r32(GSTS) & GSTS_QIES, 0);
    }

    /// GCMD bits matching the current status (what Linux keeps in
    /// `iommu->gcmd`).
    pub(crate) fn gcmd(&self) -> u32 {
        self.r32(GSTS) & (GCMD_TE | GCMD_QIE)
    }

    /// Puts descriptors at the tail and moves it.
    pub(crate) fn submit(&self, descriptors: &[[u64; 2]]) {
        let mut tail = self.r64(IQT);
        for d in descriptors {
            self.put(QUEUE + tail, d[0]);
            self.put(QUEUE + tail + 8, d[1]);
            tail = (tail + 16) % 0x1000;
        }
        self.w64(IQT, tail);
    }

    pub(crate) fn stats(&self, sid: u16) -> crate::VtdStats {
        self.unit.endpoint(sid).stats()
    }
}

/// A guest with translation on and [`SID`] in [`DOMAIN`]: IOVAs 0x1000 and
/// 0x2000 mapped read-write to `DATA` and `DATA + 0x1000` in 4 KiB pages,
/// and a 2 MiB page at 0x20_0000 onto `DATA`.
pub(crate) fn mapped() -> Guest {
    let mut g = Guest::new();
    g.context_translate();
    g.enable();
    g.map(0x1000, DATA, 1, RW);
    g.map(0x2000, DATA + 0x1000, 1, RW);
    g.map(0x20_0000, DATA, 2, RW);
    g
}

/// `mem` is used directly by tests that check guest memory is unchanged.
pub(crate) fn snapshot(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut v = vec![0u8; MEM_SIZE as usize];
    mem.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

// Descriptor encoders (VT-d 6.5.2), 128-bit.
pub(crate) fn cc_global() -> [u64; 2] {
    [0x1 | 1 << 4, 0]
}
pub(crate) fn iotlb_global() -> [u64; 2] {
    [0x2 | 1 << 4, 0]
}
pub(crate) fn iotlb_domain(did: u16) -> [u64; 2] {
    [0x2 | 2 << 4 | u64::from(did) << 16, 0]
}
pub(crate) fn iotlb_pages(did: u16, addr: u64, am: u64) -> [u64; 2] {
    [0x2 | 3 << 4 | u64::from(did) << 16, addr | am]
}
pub(crate) fn wait(status: Option<(u64, u32)>, interrupt: bool) -> [u64; 2] {
    let (sw, data, addr) = match status {
        Some((a, d)) => (1u64 << 5, u64::from(d) << 32, a),
        None => (0, 0, 0),
    };
    [0x5 | sw | u64::from(interrupt) << 4 | data, addr]
}
