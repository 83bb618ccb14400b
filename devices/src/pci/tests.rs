//! The root bus through its two front ends: register reach, absent
//! functions, BAR sizing, decoding and relocation, hostile accesses.

use std::sync::{Arc, Mutex};

use super::*;
use crate::bus::{Bus, BusDevice, BusError};
use crate::test_utils::xorshift::Xorshift;

/// A function with a 64-bit BAR 0 (16 KiB) and a 32-bit BAR 2 (4 KiB) whose
/// reads return the low byte of the offset.
struct TestDevice {
    config: PciConfigSpace,
    writes: Vec<(u8, u64, Vec<u8>)>,
}

impl TestDevice {
    fn shared() -> Arc<Mutex<TestDevice>> {
        let mut config = PciConfigSpace::new(PciIds {
            vendor_id: 0x1234,
            device_id: 0x5678,
            revision: 2,
            class_code: 0xff0000,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
        });
        config
            .add_bar(PciBar { index: 0, size: 0x4000, kind: BarKind::Memory64, prefetchable: false })
            .unwrap();
        config
            .add_bar(PciBar { index: 2, size: 0x1000, kind: BarKind::Memory32, prefetchable: false })
            .unwrap();
        Arc::new(Mutex::new(TestDevice { config, writes: Vec::new() }))
    }
}

impl PciDevice for TestDevice {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }
    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
    }
    fn bars(&self) -> Vec<PciBar> {
        self.config.bars()
    }
    fn read_bar(&mut self, index: u8, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8 ^ index);
    }
    fn write_bar(&mut self, index: u8, offset: u64, data: &[u8]) {
        self.writes.push((index, offset, data.to_vec()));
    }
}

type Moves = Vec<(u8, u8, Option<u64>, Option<u64>)>;

#[derive(Default)]
struct Listener(Mutex<Moves>);

impl BarListener for Listener {
    fn bar_moved(&self, slot: u8, bar: u8, old: Option<u64>, new: Option<u64>) {
        self.0.lock().unwrap().push((slot, bar, old, new));
    }
}

impl Listener {
    fn take(&self) -> Moves {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

const MEM32: std::ops::Range<u64> = 0xc000_0000..0xd000_0000;
const MEM64: std::ops::Range<u64> = 0x1_0000_0000..0x2_0000_0000;

struct Fixture {
    root: Arc<Mutex<PciRoot>>,
    mmio: Arc<Bus>,
    ecam: PciEcam,
    io: PciConfigIo,
    listener: Arc<Listener>,
    dev: Arc<Mutex<TestDevice>>,
}

fn fixture() -> Fixture {
    let mmio = Arc::new(Bus::new());
    let mut root = PciRoot::new(mmio.clone(), PciWindows { mem32: MEM32, mem64: Some(MEM64) }).unwrap();
    let listener = Arc::new(Listener::default());
    root.set_bar_listener(listener.clone());
    let dev = TestDevice::shared();
    assert_eq!(root.add_device(dev.clone()).unwrap(), 1);
    let root = Arc::new(Mutex::new(root));
    let ecam = PciEcam::new(root.clone(), 4);
    let io = PciConfigIo::new(root.clone());
    Fixture { root, mmio, ecam, io, listener, dev }
}

fn ecam_addr(bus: u64, dev: u64, func: u64, reg: u64) -> u64 {
    (bus << 20) | (dev << 15) | (func << 12) | reg
}

fn ecam_read(e: &mut PciEcam, dev: u64, reg: u64, len: usize) -> u32 {
    let mut b = [0; 4];
    e.read(ecam_addr(0, dev, 0, reg), &mut b[..len]);
    u32::from_le_bytes(b)
}

fn ecam_write(e: &mut PciEcam, dev: u64, reg: u64, len: usize, v: u32) {
    e.write(ecam_addr(0, dev, 0, reg), &v.to_le_bytes()[..len]);
}

fn io_select(io: &mut PciConfigIo, bus: u32, dev: u32, func: u32, reg: u32) {
    io.write(0, &((1 << 31) | (bus << 16) | (dev << 11) | (func << 8) | reg).to_le_bytes());
}

fn io_read(io: &mut PciConfigIo, dev: u32, reg: u32, len: usize) -> u32 {
    io_select(io, 0, dev, 0, reg & !3);
    let mut b = [0; 4];
    io.read(4 + u64::from(reg & 3), &mut b[..len]);
    u32::from_le_bytes(b)
}

fn io_write(io: &mut PciConfigIo, dev: u32, reg: u32, len: usize, v: u32) {
    io_select(io, 0, dev, 0, reg & !3);
    io.write(4 + u64::from(reg & 3), &v.to_le_bytes()[..len]);
}

#[test]
fn ecam_and_port_io_reach_the_same_registers() {
    let Fixture { mut ecam, mut io, .. } = fixture();
    assert_eq!(ecam.window_size(), 4 << 20);
    // Host bridge at 00:00.0, class 0x060000.
    let bridge = u32::from(HOST_BRIDGE_VENDOR_ID) | (u32::from(HOST_BRIDGE_DEVICE_ID) << 16);
    assert_eq!(ecam_read(&mut ecam, 0, 0, 4), bridge);
    assert_eq!(io_read(&mut io, 0, 0, 4), bridge);
    assert_eq!(ecam_read(&mut ecam, 0, 8, 4) >> 8, HOST_BRIDGE_CLASS);
    assert_eq!(io_read(&mut io, 0, 0xb, 1), 0x06);
    // The device at 00:01.0, at every width.
    assert_eq!(ecam_read(&mut ecam, 1, 0, 4), 0x5678_1234);
    assert_eq!(io_read(&mut io, 1, 0, 4), 0x5678_1234);
    assert_eq!(io_read(&mut io, 1, 2, 2), 0x5678);
    assert_eq!(io_read(&mut io, 1, 3, 1), 0x56);
    assert_eq!(ecam_read(&mut ecam, 1, 3, 1), 0x56);
    // Written through one, read through the other.
    ecam_write(&mut ecam, 1, 0x3c, 1, 0x0b);
    assert_eq!(io_read(&mut io, 1, 0x3c, 1), 0x0b);
    io_write(&mut io, 1, 0x0d, 1, 0x40);
    assert_eq!(ecam_read(&mut ecam, 1, 0x0c, 2), 0x4000);
    io_write(&mut io, 1, 0x0c, 2, 0x2010);
    assert_eq!(ecam_read(&mut ecam, 1, 0x0c, 4), 0x2010);
    // CONFIG_ADDRESS reads back what was written, reserved bits dropped.
    io.write(0, &0xff00_0803u32.to_le_bytes());
    let mut b = [0; 4];
    io.read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x8000_0800);
}

#[test]
fn absent_functions_and_malformed_accesses_read_all_ones() {
    let Fixture { mut ecam, mut io, dev, .. } = fixture();
    let before = dev.lock().unwrap().config.clone();
    // An empty slot, function 1, bus 1 (inside the window), beyond it.
    assert_eq!(ecam_read(&mut ecam, 5, 0, 2), 0xffff);
    assert_eq!(ecam_read(&mut ecam, 31, 0, 4), 0xffff_ffff);
    let mut b = [0; 4];
    for addr in [ecam_addr(0, 1, 1, 0), ecam_addr(1, 1, 0, 0), ecam_addr(3, 0, 0, 0), 4 << 20, u64::MAX - 3] {
        ecam.read(addr, &mut b);
        assert_eq!(b, [0xff; 4], "{addr:#x}");
        ecam.write(addr, &[0; 4]);
    }
    io_select(&mut io, 0, 1, 1, 0);
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    io_select(&mut io, 1, 1, 0, 0);
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    io_select(&mut io, 0, 7, 0, 0);
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    // Enable bit clear.
    io.write(0, &0x0000_0800u32.to_le_bytes());
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    // Misaligned, straddling, 8-byte and empty accesses.
    for (reg, len) in [(1, 2), (2, 4), (0, 8), (0xffe, 4), (0, 0), (3, 2)] {
        let mut v = vec![0u8; len];
        ecam.read(ecam_addr(0, 1, 0, reg), &mut v);
        assert!(v.iter().all(|&x| x == 0xff), "{reg:#x}/{len}");
        ecam.write(ecam_addr(0, 1, 0, reg), &vec![0x55; len]);
    }
    io_select(&mut io, 0, 1, 0, 0);
    for (port, len) in [(5, 4), (7, 2), (6, 4), (4, 8), (1, 4), (0, 2), (3, 1), (8, 1)] {
        let mut v = vec![0u8; len];
        io.read(port, &mut v);
        assert!(v.iter().all(|&x| x == 0xff), "port {port}/{len}");
        io.write(port, &vec![0x55; len]);
    }
    // The narrow writes to CONFIG_ADDRESS left it alone.
    io.read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x8000_0800);
    // Nothing reached the device's registers.
    let after = dev.lock().unwrap().config.clone();
    for reg in (0..256).step_by(4) {
        assert_eq!(before.read_u32(reg), after.read_u32(reg), "{reg:#x}");
    }
    // Extended space of a present function reads zero.
    assert_eq!(ecam_read(&mut ecam, 1, 0x100, 4), 0);
    assert_eq!(ecam_read(&mut ecam, 1, 0xffc, 4), 0);
}

#[test]
fn bars_are_allocated_programmed_and_mapped() {
    let Fixture { root, mmio, mut ecam, listener, dev, .. } = fixture();
    assert_eq!(listener.take(), vec![(1, 0, None, Some(MEM64.start)), (1, 2, None, Some(MEM32.start))]);
    assert_eq!(ecam_read(&mut ecam, 1, 0x10, 4), MEM64.start as u32 | 0x4);
    assert_eq!(ecam_read(&mut ecam, 1, 0x14, 4), 1);
    assert_eq!(ecam_read(&mut ecam, 1, 0x18, 4), MEM32.start as u32);
    assert_ne!(ecam_read(&mut ecam, 1, 4, 2) & u32::from(COMMAND_MEMORY), 0);
    let mappings = root.lock().unwrap().bar_mappings(1);
    assert_eq!(mappings.iter().map(|m| m.1).collect::<Vec<_>>(), vec![Some(MEM64.start), Some(MEM32.start)]);
    // Accesses reach the device with the BAR index and offset.
    let mut b = [0; 2];
    mmio.read(MEM64.start + 0x3ff0, &mut b).unwrap();
    assert_eq!(b, [0xf0; 2]);
    mmio.read(MEM32.start + 0x10, &mut b).unwrap();
    assert_eq!(b, [0x12; 2]);
    mmio.write(MEM32.start + 0xffc, &[1, 2, 3, 4]).unwrap();
    assert_eq!(dev.lock().unwrap().writes, vec![(2, 0xffc, vec![1, 2, 3, 4])]);
    assert!(mmio.read(MEM64.start + 0x4000, &mut b).is_err());

    // A second device gets the next naturally aligned ranges.
    let second = TestDevice::shared();
    assert_eq!(root.lock().unwrap().add_device(second).unwrap(), 2);
    assert_eq!(
        listener.take(),
        vec![(2, 0, None, Some(MEM64.start + 0x4000)), (2, 2, None, Some(MEM32.start + 0x1000))]
    );
}

#[test]
fn linux_bar_sizing_and_relocation() {
    let Fixture { mmio, mut ecam, listener, .. } = fixture();
    listener.take();
    // __pci_read_base: decoding off, all-ones, read, restore.
    let cmd = ecam_read(&mut ecam, 1, 4, 2);
    ecam_write(&mut ecam, 1, 4, 2, cmd & !u32::from(COMMAND_MEMORY));
    assert_eq!(listener.take(), vec![(1, 0, Some(MEM64.start), None), (1, 2, Some(MEM32.start), None)]);
    let mut b = [0; 4];
    assert_eq!(mmio.read(MEM64.start, &mut b), Err(BusError::Unmapped { addr: MEM64.start, len: 4 }));
    let mut sizes = Vec::new();
    for reg in [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24] {
        let orig = ecam_read(&mut ecam, 1, reg, 4);
        ecam_write(&mut ecam, 1, reg, 4, 0xffff_ffff);
        sizes.push(ecam_read(&mut ecam, 1, reg, 4));
        ecam_write(&mut ecam, 1, reg, 4, orig);
    }
    assert_eq!(sizes, vec![0xffff_c004, 0xffff_ffff, 0xffff_f000, 0, 0, 0]);
    // Nothing decodes while memory space is off, whatever the BARs say.
    assert!(listener.take().is_empty());
    // The guest moves both BARs, then enables decoding.
    ecam_write(&mut ecam, 1, 0x10, 4, 0x8000_0000);
    ecam_write(&mut ecam, 1, 0x14, 4, 0x1);
    ecam_write(&mut ecam, 1, 0x18, 4, 0xc800_0000);
    assert!(listener.take().is_empty());
    ecam_write(&mut ecam, 1, 4, 2, cmd);
    assert_eq!(listener.take(), vec![(1, 0, None, Some(0x1_8000_0000)), (1, 2, None, Some(0xc800_0000))]);
    assert!(mmio.read(0x1_8000_0000, &mut b).is_ok());
    assert!(mmio.read(MEM64.start, &mut b).is_err());
    assert!(mmio.read(MEM32.start, &mut b).is_err());

    // Moving a BAR with decoding on (Linux never does; a guest may).
    ecam_write(&mut ecam, 1, 0x18, 4, 0xc900_0000);
    assert_eq!(listener.take(), vec![(1, 2, Some(0xc800_0000), Some(0xc900_0000))]);
    // Sizing with decoding on: the all-ones address does not decode.
    ecam_write(&mut ecam, 1, 0x18, 4, 0xffff_ffff);
    assert_eq!(listener.take(), vec![(1, 2, Some(0xc900_0000), Some(0xffff_f000))]);
    ecam_write(&mut ecam, 1, 0x10, 4, 0xffff_ffff);
    ecam_write(&mut ecam, 1, 0x14, 4, 0xffff_ffff);
    assert_eq!(
        listener.take(),
        vec![(1, 0, Some(0x1_8000_0000), Some(0x1_ffff_c000)), (1, 0, Some(0x1_ffff_c000), None)]
    );
    // Address 0 does not decode either (the low half written first makes
    // a transient address, as on hardware).
    ecam_write(&mut ecam, 1, 0x10, 4, 0);
    ecam_write(&mut ecam, 1, 0x14, 4, 0);
    let transient = 0xffff_ffff_0000_0000;
    assert_eq!(listener.take(), vec![(1, 0, None, Some(transient)), (1, 0, Some(transient), None)]);
}

#[test]
fn bar_moved_onto_another_device_stays_unmapped() {
    let Fixture { mmio, mut ecam, listener, .. } = fixture();
    listener.take();
    let other_region: crate::bus::SharedDevice = Arc::new(Mutex::new(OtherRegion));
    mmio.insert(other_region, 0xd000_0000, 0x1000).unwrap();
    ecam_write(&mut ecam, 1, 0x18, 4, 0xd000_0000);
    assert_eq!(listener.take(), vec![(1, 2, Some(MEM32.start), None)]);
    let mut b = [0; 1];
    mmio.read(0xd000_0000, &mut b).unwrap();
    assert_eq!(b, [0xaa], "the existing device keeps its range");
    ecam_write(&mut ecam, 1, 0x18, 4, MEM32.start as u32);
    assert_eq!(listener.take(), vec![(1, 2, None, Some(MEM32.start))]);
}

struct OtherRegion;
impl BusDevice for OtherRegion {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xaa);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// A guest moving BARs, sizing them and toggling memory decoding thousands
/// of times: the bus never holds more than one range per BAR, and every
/// move the listener hears (the VMM re-registers queue ioeventfds from
/// them) removes exactly what the previous one added, so registrations
/// never pile up.
#[test]
fn repeated_bar_moves_keep_registrations_constant() {
    let Fixture { root, mmio, mut ecam, listener, .. } = fixture();
    let mut registered: std::collections::BTreeSet<(u8, u64)> =
        listener.take().into_iter().map(|(_, bar, _, new)| (bar, new.unwrap())).collect();
    let mut rng = Xorshift(0x5eed_ba25);
    let (mut writes, mut moves) = (0, 0);
    for _ in 0..20_000 {
        let r = rng.next_u64();
        let (reg, value) = match r % 8 {
            // Memory decoding on or off.
            0 => (0x04, u32::from(COMMAND_MEMORY) * (r >> 8 & 1) as u32),
            // Sizing.
            1 => (0x10 + 8 * (r >> 8 & 1), 0xffff_ffff),
            // BAR 0 (64-bit) and BAR 2 (32-bit) anywhere in their windows,
            // overlapping each other at times.
            2 | 3 => (0x10, (MEM32.start + (r >> 20) % 0x40 * 0x1000) as u32 | 4),
            4 => (0x14, (r >> 8 & 1) as u32),
            5 | 6 => (0x18, (MEM32.start + (r >> 20) % 0x40 * 0x1000) as u32),
            // Address 0 and a base that cannot hold the BAR.
            _ => (0x18, if r >> 8 & 1 == 0 { 0 } else { 0xffff_f800 }),
        };
        ecam_write(&mut ecam, 1, reg, 4, value);
        writes += 1;
        for (slot, bar, old, new) in listener.take() {
            assert_eq!(slot, 1);
            moves += 1;
            if let Some(old) = old {
                assert!(registered.remove(&(bar, old)), "BAR {bar} moved from {old:#x}, never registered");
            }
            if let Some(new) = new {
                assert!(registered.insert((bar, new)), "BAR {bar} registered twice at {new:#x}");
            }
        }
        let ranges = mmio.ranges();
        assert!(ranges.len() <= 2, "after {writes} writes: {ranges:x?}");
        let mapped: Vec<u64> = root.lock().unwrap().bar_mappings(1).iter().filter_map(|m| m.1).collect();
        let mut registered_bases: Vec<u64> = registered.iter().map(|&(_, base)| base).collect();
        registered_bases.sort_unstable();
        assert_eq!(ranges.iter().map(|r| r.0).collect::<Vec<_>>(), registered_bases);
        let mut mapped_sorted = mapped.clone();
        mapped_sorted.sort_unstable();
        assert_eq!(mapped_sorted, registered_bases);
    }
    assert!(moves > 5_000, "only {moves} moves");
}

#[test]
fn topology_errors() {
    let mmio = Arc::new(Bus::new());
    for (mem32, mem64) in
        [(0x1000..0x1000, None), (0x1_0000_0000..0x1_0001_0000, None), (0x1000..0x2000, Some(5..5))]
    {
        assert!(matches!(
            PciRoot::new(mmio.clone(), PciWindows { mem32, mem64 }),
            Err(PciError::InvalidWindow { .. })
        ));
    }
    // No 64-bit window: 64-bit BARs go below 4 GiB. A window too small.
    let mut root =
        PciRoot::new(mmio.clone(), PciWindows { mem32: 0xc000_0000..0xc000_8000, mem64: None }).unwrap();
    assert_eq!(root.add_device(TestDevice::shared()).unwrap(), 1);
    assert_eq!(root.bar_mappings(1)[0].1, Some(0xc000_0000));
    assert_eq!(root.bar_mappings(1)[1].1, Some(0xc000_4000));
    assert!(matches!(
        root.add_device(TestDevice::shared()),
        Err(PciError::NoBarSpace { slot: 2, index: 0, .. })
    ));
    assert!(root.bar_mappings(2).is_empty());
    assert!(root.bar_mappings(200).is_empty());
    // The window overlaps something already on the bus.
    let mmio = Arc::new(Bus::new());
    mmio.insert(Arc::new(Mutex::new(OtherRegion)), 0xc000_4000, 0x1000).unwrap();
    let mut root =
        PciRoot::new(mmio.clone(), PciWindows { mem32: 0xc000_0000..0xd000_0000, mem64: None }).unwrap();
    let listener = Arc::new(Listener::default());
    root.set_bar_listener(listener.clone());
    assert!(matches!(
        root.add_device(TestDevice::shared()),
        Err(PciError::BarPlacement { slot: 1, index: 2, addr: 0xc000_4000 })
    ));
    assert_eq!(listener.take(), vec![(1, 0, None, Some(0xc000_0000)), (1, 0, Some(0xc000_0000), None)]);
    let mut b = [0; 1];
    assert!(mmio.read(0xc000_0000, &mut b).is_err());
    // 31 devices fill the bus.
    let mmio = Arc::new(Bus::new());
    let mut root = PciRoot::new(mmio, PciWindows { mem32: 0x8000_0000..0x1_0000_0000, mem64: None }).unwrap();
    for n in 1..32 {
        assert_eq!(root.add_device(TestDevice::shared()).unwrap(), n);
    }
    assert!(matches!(root.add_device(TestDevice::shared()), Err(PciError::NoFreeSlot)));
    // Chosen device numbers.
    let mmio = Arc::new(Bus::new());
    let mut root = PciRoot::new(mmio, PciWindows { mem32: MEM32, mem64: None }).unwrap();
    root.add_device_at(7, TestDevice::shared()).unwrap();
    for n in [0, 7, 32, 255] {
        assert!(
            matches!(root.add_device_at(n, TestDevice::shared()), Err(PciError::SlotUnavailable(m)) if m == n)
        );
    }
    assert_eq!(root.add_device(TestDevice::shared()).unwrap(), 1);
    assert_eq!(root.bar_mappings(7)[0].1, Some(MEM32.start));
    assert_eq!(root.bar_mappings(1)[0].1, Some(MEM32.start + 0x8000));
}

#[test]
fn garbage_sweep_never_panics() {
    let Fixture { root, mmio, mut ecam, mut io, .. } = fixture();
    let mut rng = Xorshift(0x1234_5678_9abc_def1);
    for _ in 0..20_000 {
        let size = [1usize, 2, 4, 8][(rng.next_u64() % 4) as usize];
        let r = rng.next_u64();
        // Mostly the populated functions, sometimes anywhere.
        let offset =
            if r % 4 == 0 { rng.next_u64() } else { ecam_addr(0, r % 3, 0, rng.next_u64() % 0x1000) };
        let mut buf = [0u8; 8];
        ecam.read(offset, &mut buf[..size]);
        let v = rng.next_u64().to_le_bytes();
        // Keep the command register mostly decoding.
        ecam.write(offset, &v[..size]);
        let port = rng.next_u64() % 10;
        io.read(port, &mut buf[..size]);
        if rng.next_u64() % 3 == 0 {
            io.write(0, &(0x8000_0000 | (rng.next_u64() as u32 & 0x00ff_fffc)).to_le_bytes());
        } else {
            io.write(port, &v[..size]);
        }
        let _ = mmio.read(MEM32.start + rng.next_u64() % 0x2000, &mut buf[..size]);
    }
    // The bridge is untouched, the device still answers.
    assert_eq!(ecam_read(&mut ecam, 0, 0, 2), u32::from(HOST_BRIDGE_VENDOR_ID));
    assert_eq!(ecam_read(&mut ecam, 1, 0, 2), 0x1234);
    // The root's view of the mappings matches the bus.
    for (bar, mapped) in root.lock().unwrap().bar_mappings(1) {
        if let Some(addr) = mapped {
            let mut b = [0; 1];
            mmio.read(addr + bar.size - 1, &mut b).unwrap();
        }
    }
}

/// Two segments as a VMM builds them: roots on one MMIO bus, each with its
/// own windows, host bridge and ECAM window; a device on one is invisible
/// from the other, and BARs come from the owning root's windows.
#[test]
fn segments_share_the_mmio_bus_and_nothing_else() {
    let mmio = Arc::new(Bus::new());
    let second_windows =
        PciWindows { mem32: 0xd100_0000..0xd200_0000, mem64: Some(0x2_0000_0000..0x3_0000_0000) };
    let mut first = PciRoot::new(mmio.clone(), PciWindows { mem32: MEM32, mem64: Some(MEM64) }).unwrap();
    let mut second = PciRoot::new(mmio.clone(), second_windows).unwrap().with_segment(1);
    assert_eq!((first.segment(), second.segment()), (0, 1));
    assert_eq!(first.add_device(TestDevice::shared()).unwrap(), 1);
    assert_eq!(second.add_device(TestDevice::shared()).unwrap(), 1);
    assert_eq!(second.add_device(TestDevice::shared()).unwrap(), 2);
    let bar0 = |root: &PciRoot, slot| root.bar_mappings(slot)[0].1.unwrap();
    assert!(MEM64.contains(&bar0(&first, 1)));
    assert!((0x2_0000_0000..0x3_0000_0000).contains(&bar0(&second, 1)));
    assert_ne!(bar0(&second, 1), bar0(&second, 2));
    let (first, second) = (Arc::new(Mutex::new(first)), Arc::new(Mutex::new(second)));
    // One bus each, as segments other than 0 have.
    let mut e0 = PciEcam::new(first, 1);
    let mut e1 = PciEcam::new(second, 1);
    for e in [&mut e0, &mut e1] {
        assert_eq!(ecam_read(e, 0, u64::from(PCI_VENDOR_ID), 2), u32::from(HOST_BRIDGE_VENDOR_ID));
        assert_eq!(ecam_read(e, 1, u64::from(PCI_VENDOR_ID), 2), 0x1234);
        // Bus 1 is outside a one-bus window.
        let mut b = [0; 2];
        e.read(ecam_addr(1, 0, 0, 0), &mut b);
        assert_eq!(b, [0xff; 2]);
    }
    assert_eq!(ecam_read(&mut e0, 2, u64::from(PCI_VENDOR_ID), 2), 0xffff, "slot 2 is on the other segment");
    assert_eq!(ecam_read(&mut e1, 2, u64::from(PCI_VENDOR_ID), 2), 0x1234);
    // Memory decoding off on segment 1's device 1 unmaps only its BARs.
    ecam_write(&mut e1, 1, u64::from(PCI_COMMAND), 2, 0);
    let mut b = [0; 1];
    mmio.read(0x1_0000_0000 + 1, &mut b).unwrap();
    assert_eq!(b, [1], "segment 0's BAR still decodes");
}

/// An unplugged device leaves the bus and its slot; the next device may
/// take its place and its BAR space, and a BAR the guest moved is never
/// given to another device.
#[test]
fn unplugged_devices_free_their_slot_and_bar_space() {
    let Fixture { root, mmio, mut ecam, listener, .. } = fixture();
    listener.take();
    let mut r = root.lock().unwrap();
    r.add_device_at(2, TestDevice::shared()).unwrap();
    listener.take();
    r.remove_device(1).unwrap();
    assert_eq!(listener.take(), vec![(1, 0, Some(MEM64.start), None), (1, 2, Some(MEM32.start), None)]);
    let mut b = [0; 4];
    assert!(mmio.read(MEM64.start, &mut b).is_err(), "the BAR left the bus");
    drop(r);
    assert_eq!(ecam_read(&mut ecam, 1, 0, 4), 0xffff_ffff, "the slot is empty");
    let mut r = root.lock().unwrap();
    assert!(matches!(r.remove_device(1), Err(PciError::SlotUnavailable(1))));
    assert!(matches!(r.remove_device(0), Err(PciError::SlotUnavailable(0))), "the host bridge stays");
    assert!(matches!(r.remove_device(40), Err(PciError::SlotUnavailable(40))));
    // The freed space is reused, below device 2's.
    r.add_device_at(1, TestDevice::shared()).unwrap();
    assert_eq!(listener.take(), vec![(1, 0, None, Some(MEM64.start)), (1, 2, None, Some(MEM32.start))]);
    drop(r);
    // The guest moves device 1's 32-bit BAR up; a new device avoids it.
    let moved = MEM32.start + 0x2000;
    ecam_write(&mut ecam, 1, 0x18, 4, moved as u32);
    listener.take();
    root.lock().unwrap().add_device_at(3, TestDevice::shared()).unwrap();
    assert_eq!(
        listener.take(),
        vec![(3, 0, None, Some(MEM64.start + 0x8000)), (3, 2, None, Some(MEM32.start))],
        "first fit: the 32-bit BAR takes the hole device 1 left"
    );
}

#[test]
// One taken range is the case, not a range meant as a list.
#[allow(clippy::single_range_in_vec_init)]
fn first_fit_skips_taken_ranges_and_stops_at_the_window_end() {
    let w = 0x1000..0x5000;
    assert_eq!(root::first_fit(&w, 0x1000, &[]), Some(0x1000));
    assert_eq!(root::first_fit(&w, 0x1000, &[0x1000..0x1800, 0x2000..0x3000]), Some(0x3000));
    assert_eq!(root::first_fit(&w, 0x2000, &[0x1000..0x1001]), Some(0x2000));
    assert_eq!(root::first_fit(&w, 0x2000, &[0x2000..0x2001]), None, "0x4000 + 0x2000 is beyond the window");
    assert_eq!(root::first_fit(&(u64::MAX - 0xfff..u64::MAX), 0x1000, &[]), None);
}
