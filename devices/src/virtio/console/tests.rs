//! virtio-console end to end: chains written by a mock driver into
//! canary-filled guest memory, checked in the used rings, in the host output,
//! in the receive buffers and in every guest byte outside them.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::GuestMemoryMmap;

use super::*;
use crate::test_utils::guest_memory::{
    memory, read, write, MemCheck, WriteProtected, MEM_SIZE, REGION_SPLIT,
};
use crate::test_utils::interrupts::Interrupts;
use crate::test_utils::split_queue::{activate, Driver};
use crate::virtio::device::InterruptKind;

const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// The transmit queue's rings sit above the receive queue's.
const TX_RINGS: u64 = 0x3000;
const SIZE: u16 = 16;

/// A host sink the test can read back, or one that always fails.
#[derive(Clone, Default)]
struct Sink {
    bytes: Arc<Mutex<Vec<u8>>>,
    broken: bool,
    flushes: Arc<Mutex<usize>>,
}

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.broken {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
}

fn event_pending(e: &EventFd) -> bool {
    e.read().is_ok()
}

fn console(sink: &Sink) -> Console<GuestMemoryMmap> {
    Console::new(Box::new(sink.clone())).unwrap()
}

#[test]
fn features_identity_and_config() {
    let sink = Sink::default();
    let c = console(&sink);
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::device_type(&c), 3);
    assert_eq!(
        VirtioDevice::<GuestMemoryMmap>::device_features(&c),
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX
    );
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::queue_max_sizes(&c), &[256, 256]);
    let mut cfg = [0xffu8; 12];
    VirtioDevice::<GuestMemoryMmap>::read_config(&c, 0, &mut cfg);
    assert_eq!(cfg, [0; 12]);
    let mut tail = [0xffu8; 4];
    VirtioDevice::<GuestMemoryMmap>::read_config(&c, 8, &mut tail);
    assert_eq!(tail, [0; 4]);
}

#[test]
fn activation_needs_both_queues() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let rx = Driver::new(&mem, SIZE);
    let irq = Arc::new(Interrupts::default());
    let err = c
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![rx.queue()],
            acked_features: VIRTIO_F_VERSION_1,
            interrupt: irq.clone(),
        })
        .unwrap_err();
    assert!(matches!(err, DeviceError::QueueNotReady(1)));
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS).queue();
    tx.set_ready(false);
    let err = c
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![rx.queue(), tx],
            acked_features: VIRTIO_F_VERSION_1,
            interrupt: irq,
        })
        .unwrap_err();
    assert!(matches!(err, DeviceError::QueueNotReady(1)));
    assert_eq!(c.push_input(b"x"), 0);
}

#[test]
fn transmit_chains_produce_exact_bytes() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    write(&mem, 0x10000, b"hello, ");
    write(&mem, 0x20000, b"world");
    write(&mem, 0x30000, b"!\n");
    write(&mem, 0x31000, b"second ");
    // An indirect chain, and a buffer straddling the two memory regions.
    write(&mem, 0x32000, b"indirect ");
    write(&mem, REGION_SPLIT - 4, b"straddle");
    write(&mem, 0x33000, b"\n");
    let h1 = tx.chain(&[(0x10000, 7, R), (0x20000, 5, R), (0x30000, 2, R)]);
    let h2 = tx.chain(&[(0x31000, 7, R)]);
    tx.indirect_table(
        0x40000,
        &[(0x32000, 9, R), (REGION_SPLIT - 4, 8, R), (0x50000, 0, R), (0x33000, 1, R)],
    );
    let h3 = tx.chain(&[(0x40000, 4 * 16, INDIRECT)]);
    for h in [h1, h2, h3] {
        tx.publish(h);
    }
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(sink.take(), b"hello, world!\nsecond indirect straddle\n");
    assert!(*sink.flushes.lock().unwrap() >= 1);
    for (i, h) in [h1, h2, h3].into_iter().enumerate() {
        assert_eq!(tx.used(i as u16), (u32::from(h), 0));
    }
    assert_eq!(irq.kinds(), vec![InterruptKind::Queue(1)]);
    check.assert_only_changed(&mem, &[tx.used_ring()]);
    // Nothing new: no output, no interrupt.
    c.process_queue(1).unwrap();
    assert!(sink.take().is_empty());
    assert_eq!(irq.count(), 1);
}

#[test]
fn large_transmit_chain_goes_through_the_bounce_buffer() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let data: Vec<u8> = (0..3 * BOUNCE_LEN + 17).map(|i| (i * 7 % 256) as u8).collect();
    write(&mem, 0x20000, &data);
    let h = tx.chain(&[(0x20000, data.len() as u32, R)]);
    tx.publish(h);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(sink.take(), data);
}

/// 256 KiB of output straddling the two memory regions, for chains that
/// read it several times over.
const BIG_AT: u64 = REGION_SPLIT - 0x2_0000;
const BIG_LEN: u32 = 0x4_0000;

fn big_pattern(mem: &GuestMemoryMmap) -> Vec<u8> {
    let data: Vec<u8> = (0..BIG_LEN as usize).map(|i| (i * 13 % 251) as u8).collect();
    write(mem, BIG_AT, &data);
    data
}

#[test]
fn chains_longer_than_a_pass_are_written_over_several_passes() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let big = big_pattern(&mem);
    write(&mem, 0x10000, b"tail\n");
    // Six overlapping descriptors: 1.5 MiB of output from 256 KiB.
    let h1 = tx.chain(&[(BIG_AT, BIG_LEN, R); 6]);
    let h2 = tx.chain(&[(0x10000, 5, R)]);
    tx.publish(h1);
    tx.publish(h2);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    let mut out = Vec::new();

    c.process_queue(1).unwrap();
    let first = sink.take();
    assert_eq!(first.len(), CONSOLE_TRANSMIT_BUDGET);
    assert!(VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    assert!(!VirtioDevice::<GuestMemoryMmap>::work_left(&c, 0));
    // The long chain is not returned while it is being written.
    assert_eq!(tx.used_idx(), 0);
    assert_eq!(irq.count(), 0);
    out.extend(first);

    c.process_queue(1).unwrap();
    out.extend(sink.take());
    assert!(!VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    assert_eq!(tx.used_idx(), 2);
    assert_eq!(tx.used(0), (u32::from(h1), 0));
    assert_eq!(tx.used(1), (u32::from(h2), 0));
    assert_eq!(irq.kinds(), vec![InterruptKind::Queue(1)]);
    let mut expected = big.repeat(6);
    expected.extend_from_slice(b"tail\n");
    assert!(
        out == expected,
        "output differs from the chains' bytes ({} vs {} bytes)",
        out.len(),
        expected.len()
    );
    check.assert_only_changed(&mem, &[tx.used_ring()]);
}

#[test]
fn a_pass_stops_between_chains_when_the_budget_is_spent() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    big_pattern(&mem);
    // Exactly one pass's worth, then a short chain.
    let passes = CONSOLE_TRANSMIT_BUDGET / BIG_LEN as usize;
    let heads: Vec<u16> = (0..passes).map(|_| tx.chain(&[(BIG_AT, BIG_LEN, R)])).collect();
    let last = tx.chain(&[(0x10000, 4, R)]);
    write(&mem, 0x10000, b"last");
    for &h in heads.iter().chain([&last]) {
        tx.publish(h);
    }
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(sink.take().len(), CONSOLE_TRANSMIT_BUDGET);
    // The chains written whole are returned at once.
    assert_eq!(tx.used_idx(), passes as u16);
    assert!(VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    c.process_queue(1).unwrap();
    assert_eq!(sink.take(), b"last");
    assert_eq!(tx.used(passes as u16), (u32::from(last), 0));
    assert!(!VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    // Done: the driver is asked to notify at its next post.
    assert_eq!(tx.avail_event(), passes as u16 + 1);
}

#[test]
fn long_chain_ends_where_its_next_part_is_unreadable() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let big = big_pattern(&mem);
    let mut bufs = vec![(BIG_AT, BIG_LEN, R); 5];
    bufs.push((MEM_SIZE as u64 - 2, 4, R));
    let h = tx.chain(&bufs);
    tx.publish(h);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert!(sink.take() == big.repeat(4), "the first pass is four whole copies");
    c.process_queue(1).unwrap();
    // The second pass covers the fifth copy and the unreadable buffer.
    assert!(sink.take().is_empty());
    assert_eq!(tx.used(0), (u32::from(h), 0));
    assert!(!VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
}

#[test]
fn reset_forgets_a_chain_half_written() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    big_pattern(&mem);
    let h = tx.chain(&[(BIG_AT, BIG_LEN, R); 5]);
    tx.publish(h);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert!(VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    sink.take();
    VirtioDevice::<GuestMemoryMmap>::reset(&mut c);
    assert!(!VirtioDevice::<GuestMemoryMmap>::work_left(&c, 1));
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    write(&mem, 0x10000, b"fresh");
    let h = tx.chain(&[(0x10000, 5, R)]);
    tx.publish(h);
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(sink.take(), b"fresh");
}

#[test]
fn input_fills_posted_buffers_in_order() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h1 = rx.chain(&[(0x10000, 4, W)]);
    let h2 = rx.chain(&[(0x11000, 3, W), (0x12000, 5, W)]);
    let h3 = rx.chain(&[(0x13000, 10, W)]);
    for h in [h1, h2, h3] {
        rx.publish(h);
    }
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    assert!(c.input_room());
    assert_eq!(c.push_input(b"abcdefghijklmnopqrst"), 20);
    assert_eq!(rx.used(0), (u32::from(h1), 4));
    assert_eq!(rx.used(1), (u32::from(h2), 8));
    assert_eq!(rx.used(2), (u32::from(h3), 8));
    assert_eq!(read(&mem, 0x10000, 4), b"abcd");
    assert_eq!(read(&mem, 0x11000, 3), b"efg");
    assert_eq!(read(&mem, 0x12000, 5), b"hijkl");
    assert_eq!(read(&mem, 0x13000, 8), b"mnopqrst");
    check
        .assert_only_changed(&mem, &[rx.used_ring(), (0x10000, 4), (0x11000, 3), (0x12000, 5), (0x13000, 8)]);
    assert_eq!(irq.kinds(), vec![InterruptKind::Queue(0)]);
    // Out of buffers: nothing taken, no room, no interrupt.
    assert!(!c.input_room());
    assert_eq!(c.push_input(b"uv"), 0);
    assert_eq!(rx.used_idx(), 3);
    assert_eq!(irq.count(), 1);
}

#[test]
fn partial_counts_when_out_of_buffers_then_resume_on_notification() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let input = c.input();
    let ready = input.input_ready_event().try_clone().unwrap();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    // Before activation: nothing taken, no room.
    assert_eq!(input.push_input(b"early"), 0);
    assert!(!input.input_room());
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    // Activation wakes the VMM; with no buffers there is no room.
    assert!(event_pending(&ready));
    assert!(!input.input_room());
    assert_eq!(input.push_input(b"0123456789"), 0);

    let h1 = rx.chain(&[(0x10000, 6, W)]);
    rx.publish(h1);
    // The notification wakes the VMM.
    c.process_queue(0).unwrap();
    assert!(event_pending(&ready));
    assert!(!event_pending(&ready));
    assert!(input.input_room());
    let data = b"0123456789";
    let n = input.push_input(data);
    assert_eq!(n, 6);
    assert_eq!(read(&mem, 0x10000, 6), b"012345");
    // The device asks to be notified at the next posted buffer.
    assert_eq!(rx.avail_event(), 1);
    assert!(!input.input_room());

    let h2 = rx.chain(&[(0x11000, 64, W)]);
    rx.publish(h2);
    c.process_queue(0).unwrap();
    assert!(event_pending(&ready));
    assert_eq!(input.push_input(&data[n..]), 4);
    assert_eq!(rx.used(1), (u32::from(h2), 4));
    assert_eq!(read(&mem, 0x11000, 4), b"6789");
    assert_eq!(rx.avail_event(), 2);
    // The 64-byte buffer was returned with 4 bytes: the next input needs a
    // new buffer.
    assert!(!input.input_room());
    // Spurious notification with nothing posted: no wake-up.
    c.process_queue(0).unwrap();
    assert!(!event_pending(&ready));
}

#[test]
fn event_idx_interrupts_only_when_asked() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    for i in 0..4u64 {
        let h = rx.chain(&[(0x10000 + i * 0x100, 1, W)]);
        rx.publish(h);
    }
    // Interrupt when the third buffer is used (used_event = 2).
    rx.set_used_event(2);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    assert_eq!(c.push_input(b"a"), 1);
    assert_eq!(c.push_input(b"b"), 1);
    assert_eq!(irq.count(), 0);
    assert_eq!(c.push_input(b"c"), 1);
    assert_eq!(irq.kinds(), vec![InterruptKind::Queue(0)]);
    assert_eq!(c.push_input(b"d"), 1);
    assert_eq!(irq.count(), 1);
}

#[test]
fn hostile_receive_chains_are_returned_unused() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    // A loop: 0 -> 1 -> 0.
    rx.desc(0, 0x10000, 64, W | NEXT, 1);
    rx.desc(1, 0x11000, 64, W | NEXT, 0);
    rx.publish(0);
    // A device-readable buffer.
    rx.desc(2, 0x12000, 64, R, 0);
    rx.publish(2);
    // Outside guest memory, and running off its end.
    rx.desc(3, MEM_SIZE as u64 + 0x1000, 64, W, 0);
    rx.publish(3);
    rx.desc(4, MEM_SIZE as u64 - 2, 64, W, 0);
    rx.publish(4);
    rx.desc(5, u64::MAX - 8, 64, W, 0);
    rx.publish(5);
    // Writable, then device-readable.
    rx.desc(6, 0x13000, 64, W | NEXT, 7);
    rx.desc(7, 0x14000, 64, R, 0);
    rx.publish(6);
    // An indirect table inside an indirect table; one longer than the queue.
    rx.indirect_table(0x40000, &[(0x41000, 0x20, INDIRECT)]);
    rx.desc(8, 0x40000, 16, INDIRECT, 0);
    rx.publish(8);
    let long: Vec<_> = (0..17u64).map(|i| (0x50000 + i * 0x100, 0x10u32, W)).collect();
    rx.indirect_table(0x42000, &long);
    rx.desc(9, 0x42000, 17 * 16, INDIRECT, 0);
    rx.publish(9);
    // Zero-length buffers only.
    rx.desc(10, 0x15000, 0, W, 0);
    rx.publish(10);
    // Finally a good one, straddling the two memory regions.
    rx.desc(11, REGION_SPLIT - 3, 8, W, 0);
    rx.publish(11);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(c.push_input(b"payload!!"), 8);
    for (i, head) in [0u16, 2, 3, 4, 5, 6, 8, 9, 10].into_iter().enumerate() {
        assert_eq!(rx.used(i as u16), (u32::from(head), 0), "chain {head}");
    }
    assert_eq!(rx.used(9), (11, 8));
    assert_eq!(read(&mem, REGION_SPLIT - 3, 8), b"payload!");
    check.assert_only_changed(&mem, &[rx.used_ring(), (REGION_SPLIT - 3, 8)]);
}

#[test]
fn receive_buffer_the_device_may_not_write_is_returned_unused() {
    let mem = memory();
    let protected = Arc::new(WriteProtected { inner: mem.clone(), window: (0x20000, 0x21000) });
    let mut c = Console::<WriteProtected>::new(Box::new(Sink::default())).unwrap();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    // The first buffer is writable, the second is not: nothing written.
    let h1 = rx.chain(&[(0x10000, 4, W), (0x20800, 4, W)]);
    let h2 = rx.chain(&[(0x11000, 4, W), (0x12000, 4, W)]);
    // Only the part the input fills must be writable.
    let h3 = rx.chain(&[(0x13000, 2, W), (0x20800, 4, W)]);
    for h in [h1, h2, h3] {
        rx.publish(h);
    }
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, protected, &[&rx, &tx], 0, &irq);
    assert_eq!(c.push_input(b"abcdefgh"), 8);
    assert_eq!(rx.used(0), (u32::from(h1), 0));
    assert_eq!(rx.used(1), (u32::from(h2), 8));
    assert_eq!(c.push_input(b"ij"), 2);
    assert_eq!(rx.used(2), (u32::from(h3), 2));
    assert_eq!(read(&mem, 0x11000, 4), b"abcd");
    assert_eq!(read(&mem, 0x12000, 4), b"efgh");
    assert_eq!(read(&mem, 0x13000, 2), b"ij");
    check.assert_only_changed(&mem, &[rx.used_ring(), (0x11000, 4), (0x12000, 4), (0x13000, 2)]);
}

#[test]
fn hostile_transmit_chains_produce_nothing() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    write(&mem, 0x10000, b"AAAA");
    write(&mem, 0x11000, b"BBBB");
    // A loop.
    tx.desc(0, 0x10000, 4, NEXT, 1);
    tx.desc(1, 0x11000, 4, NEXT, 0);
    tx.publish(0);
    // A device-writable buffer after a readable one.
    tx.desc(2, 0x10000, 4, NEXT, 3);
    tx.desc(3, 0x11000, 4, W, 0);
    tx.publish(2);
    // Readable, then outside guest memory.
    tx.desc(4, 0x10000, 4, NEXT, 5);
    tx.desc(5, MEM_SIZE as u64 - 2, 4, R, 0);
    tx.publish(4);
    // `next` outside the table.
    tx.desc(6, 0x10000, 4, NEXT, 200);
    tx.publish(6);
    // Nested indirect tables.
    tx.indirect_table(0x40000, &[(0x41000, 0x20, INDIRECT)]);
    tx.desc(7, 0x40000, 16, INDIRECT, 0);
    tx.publish(7);
    // Then a good one.
    tx.desc(8, 0x11000, 4, R, 0);
    tx.publish(8);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(sink.take(), b"BBBB");
    for (i, head) in [0u16, 2, 4, 6, 7, 8].into_iter().enumerate() {
        assert_eq!(tx.used(i as u16), (u32::from(head), 0), "chain {head}");
    }
    check.assert_only_changed(&mem, &[tx.used_ring()]);
}

#[test]
fn protocol_violation_while_pushing_is_reported_at_the_next_notification() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = rx.chain(&[(0x10000, 2, W)]);
    rx.publish(h);
    // A head index outside the queue.
    rx.publish(SIZE + 3);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(c.push_input(b"abcd"), 2);
    assert_eq!(read(&mem, 0x10000, 2), b"ab");
    assert!(!c.input_room());
    assert_eq!(c.push_input(b"cd"), 0);
    assert!(matches!(c.process_queue(1), Err(DeviceError::Queue(_))));
    // Reported once.
    c.process_queue(1).unwrap();
    // A reset and a new activation bring input back.
    c.reset();
    let mut rx = Driver::new(&mem, SIZE);
    let h = rx.chain(&[(0x10000, 2, W)]);
    rx.publish(h);
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(c.push_input(b"cd"), 2);
}

#[test]
fn available_index_too_far_ahead_fails_the_notification() {
    let mem = memory();
    let mut c = console(&Sink::default());
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    tx.set_avail_idx(SIZE + 1);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    assert!(matches!(c.process_queue(1), Err(DeviceError::Queue(_))));
}

#[test]
fn host_output_failure_drops_output_but_returns_chains() {
    let mem = memory();
    let sink = Sink { broken: true, ..Sink::default() };
    let mut c = console(&sink);
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = tx.chain(&[(0x10000, 4, R)]);
    tx.publish(h);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(1).unwrap();
    assert_eq!(tx.used(0), (u32::from(h), 0));
    assert_eq!(irq.count(), 1);
}

#[test]
fn notifications_before_activation_and_after_reset_are_ignored() {
    let mem = memory();
    let sink = Sink::default();
    let mut c = console(&sink);
    c.process_queue(0).unwrap();
    c.process_queue(1).unwrap();
    c.process_queue(7).unwrap();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = rx.chain(&[(0x10000, 8, W)]);
    rx.publish(h);
    let irq = Arc::new(Interrupts::default());
    activate(&mut c, mem.clone(), &[&rx, &tx], 0, &irq);
    c.process_queue(7).unwrap();
    assert!(c.input_room());
    c.reset();
    assert!(!c.input_room());
    assert_eq!(c.push_input(b"x"), 0);
    c.process_queue(1).unwrap();
    assert_eq!(rx.used_idx(), 0);
}

#[test]
fn input_ready_event_is_a_pollable_fd() {
    let c = console(&Sink::default());
    assert!(c.input_ready_event().as_raw_fd() >= 0);
    assert!(!event_pending(c.input_ready_event()));
}

#[test]
fn handles_can_move_to_the_event_loop() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ConsoleInput<GuestMemoryMmap>>();
    send::<Console<GuestMemoryMmap>>();
}
