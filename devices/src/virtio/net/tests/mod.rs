//! virtio-net end to end over an in-memory backend and a socket pair:
//! chains written by a mock driver into canary-filled guest memory, checked
//! in the used rings, in what the backend got, in the receive buffers and
//! in every guest byte outside them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};
use virtio_bindings::virtio_net::{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MRG_RXBUF};
use vm_memory::GuestMemoryMmap;

use super::*;
use crate::test_utils::guest_memory::{
    memory, read, write, MemCheck, WriteProtected, MEM_SIZE, REGION_SPLIT,
};
use crate::test_utils::interrupts::Interrupts;
use crate::test_utils::net_backend::{MemBackend, Wire};
use crate::test_utils::split_queue::{activate, Driver};
use crate::virtio::device::{InterruptKind, VIRTIO_RING_F_EVENT_IDX};

mod tx_hold;

const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
const MRG: u64 = 1 << VIRTIO_NET_F_MRG_RXBUF;

/// The transmit queue's rings sit above the receive queue's.
const TX_RINGS: u64 = 0x3000;
const SIZE: u16 = 16;

const MAC: [u8; 6] = [0x02, 0xd4, 0xa0, 0x00, 0x00, 0x01];

fn net<M: GuestMemory>() -> (Net<M>, Arc<Mutex<Wire>>) {
    let (backend, wire) = MemBackend::new();
    (Net::new(MAC, Box::new(backend)).unwrap(), wire)
}

/// A frame as the TAP hands it over: a header whose `num_buffers` holds
/// garbage (the TAP leaves those bytes alone), then `len` payload bytes.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[0] = 1; // NEEDS_CSUM, passed through untouched
    f[10] = 0xee;
    f[11] = 0xee;
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

/// `f` with `num_buffers` set, as the guest should see it.
fn with_num_buffers(f: &[u8], n: u16) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10..12].copy_from_slice(&n.to_le_bytes());
    f
}

fn event_pending(e: &EventFd) -> bool {
    e.read().is_ok()
}

#[test]
fn identity_features_and_config() {
    let (n, _) = net::<GuestMemoryMmap>();
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::device_type(&n), 1);
    let f = VirtioDevice::<GuestMemoryMmap>::device_features(&n);
    for bit in [0, 1, 5, 7, 8, 11, 12, 15, 16, 28, 29, 32] {
        assert_ne!(f & 1 << bit, 0, "feature bit {bit} offered");
    }
    // Never ACCESS_PLATFORM (the transport's), no control queue, no MQ.
    for bit in [33, 17, 22] {
        assert_eq!(f & 1 << bit, 0, "feature bit {bit} not offered");
    }
    assert_eq!(VirtioDevice::<GuestMemoryMmap>::queue_max_sizes(&n), &[256, 256]);
    let mut cfg = [0u8; 8];
    VirtioDevice::<GuestMemoryMmap>::read_config(&n, 0, &mut cfg);
    assert_eq!(cfg[..6], MAC);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 1, "link up");
}

#[test]
fn offloads_follow_the_driver_and_are_cleared_at_reset() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let (rx, tx) = (Driver::new(&mem, SIZE), Driver::at(&mem, SIZE, TX_RINGS));
    let irq = Arc::new(Interrupts::default());
    activate(
        &mut n,
        mem.clone(),
        &[&rx, &tx],
        1 << VIRTIO_NET_F_GUEST_CSUM | 1 << VIRTIO_NET_F_GUEST_TSO4,
        &irq,
    );
    VirtioDevice::<GuestMemoryMmap>::reset(&mut n);
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(
        wire.lock().unwrap().offloads,
        [Offloads { csum: true, tso4: true, tso6: false }, Offloads::default(), Offloads::default()]
    );
}

#[test]
fn transmit_sends_each_chain_as_one_frame() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let f1 = frame(100, 1);
    let f2 = frame(3000, 2);
    // Header and payload in separate descriptors, one straddling the
    // memory regions; the second frame through an indirect table.
    write(&mem, 0x10000, &f1[..VNET_HDR_LEN]);
    write(&mem, REGION_SPLIT - 40, &f1[VNET_HDR_LEN..]);
    write(&mem, 0x20000, &f2[..1000]);
    write(&mem, 0x30000, &f2[1000..]);
    let h1 = tx.chain(&[(0x10000, VNET_HDR_LEN as u32, R), (REGION_SPLIT - 40, 100, R)]);
    tx.indirect_table(0x40000, &[(0x20000, 1000, R), (0x30000, (f2.len() - 1000) as u32, R)]);
    let h2 = tx.chain(&[(0x40000, 32, INDIRECT)]);
    tx.publish(h1);
    tx.publish(h2);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    n.process_queue(1).unwrap();
    assert_eq!(wire.lock().unwrap().outbox, [f1, f2]);
    assert_eq!(tx.used(0), (u32::from(h1), 0));
    assert_eq!(tx.used(1), (u32::from(h2), 0));
    assert_eq!(irq.kinds(), [InterruptKind::Queue(1)]);
    check.assert_only_changed(&mem, &[tx.used_ring()]);
    let c = n.handle().counters();
    assert_eq!((c.tx_frames, c.tx_bytes, c.tx_dropped), (2, 3100, 0));
    // Both frames moved on one notification; a notification with nothing
    // new is counted too (it was an exit all the same).
    assert_eq!(c.tx_notifications, 1);
    n.process_queue(1).unwrap();
    let c = n.handle().counters();
    assert_eq!((c.tx_frames, c.tx_notifications), (2, 2));
}

#[test]
fn receive_fills_one_chain_per_frame_without_mergeable_buffers() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    // Header and data in separate descriptors (Linux's big-packet layout).
    let h1 = rx.chain(&[(0x10000, VNET_HDR_LEN as u32, W), (0x11000, 1514, W)]);
    let h2 = rx.chain(&[(0x12000, 2000, W)]);
    rx.publish(h1);
    rx.publish(h2);
    let (f1, f2) = (frame(60, 3), frame(1514, 4));
    wire.lock().unwrap().inbox.extend([f1.clone(), f2.clone()]);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert!(event_pending(handle.ready_event()), "activation asks the loop to receive");
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h1), f1.len() as u32));
    assert_eq!(rx.used(1), (u32::from(h2), f2.len() as u32));
    let got1 = [read(&mem, 0x10000, VNET_HDR_LEN), read(&mem, 0x11000, 60)].concat();
    assert_eq!(got1, with_num_buffers(&f1, 1));
    assert_eq!(read(&mem, 0x12000, f2.len()), with_num_buffers(&f2, 1));
    check.assert_only_changed(&mem, &[rx.used_ring(), (0x10000, 12), (0x11000, 60), (0x12000, f2.len())]);
    assert_eq!(irq.kinds(), [InterruptKind::Queue(0)]);
    let c = handle.counters();
    assert_eq!((c.rx_frames, c.rx_bytes, c.rx_dropped), (2, 60 + 1514, 0));
}

#[test]
fn a_frame_too_big_for_its_chain_is_dropped_without_mergeable_buffers() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h1 = rx.chain(&[(0x10000, 100, W)]);
    let h2 = rx.chain(&[(0x11000, 100, W)]);
    rx.publish(h1);
    rx.publish(h2);
    let small = frame(50, 5);
    wire.lock().unwrap().inbox.extend([frame(200, 6), small.clone()]);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h1), 0));
    assert_eq!(rx.used(1), (u32::from(h2), small.len() as u32));
    assert_eq!(read(&mem, 0x11000, small.len()), with_num_buffers(&small, 1));
    assert_eq!(handle.counters().rx_dropped, 1);
}

#[test]
fn mergeable_buffers_take_as_many_chains_as_the_frame_needs() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let heads: Vec<u16> = (0..4).map(|i| rx.chain(&[(0x10000 + i * 0x1000, 1024, W)])).collect();
    for &h in &heads {
        rx.publish(h);
    }
    let f = frame(2500, 7); // 2512 bytes: three chains of 1024
    let small = frame(10, 8);
    wire.lock().unwrap().inbox.extend([f.clone(), small.clone()]);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], MRG, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(heads[0]), 1024));
    assert_eq!(rx.used(1), (u32::from(heads[1]), 1024));
    assert_eq!(rx.used(2), (u32::from(heads[2]), 464));
    assert_eq!(rx.used(3), (u32::from(heads[3]), small.len() as u32));
    let got = [read(&mem, 0x10000, 1024), read(&mem, 0x11000, 1024), read(&mem, 0x12000, 464)].concat();
    assert_eq!(got, with_num_buffers(&f, 3));
    assert_eq!(read(&mem, 0x13000, small.len()), with_num_buffers(&small, 1));
    check.assert_only_changed(
        &mem,
        &[rx.used_ring(), (0x10000, 1024), (0x11000, 1024), (0x12000, 464), (0x13000, small.len())],
    );
    assert_eq!(irq.count(), 1, "one interrupt for the pass");
}

#[test]
fn a_guest_that_never_posts_receive_buffers_stalls_only_receiving() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    for i in 0..1000u32 {
        wire.lock().unwrap().inbox.push_back(frame(64, i as u8));
    }
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    for _ in 0..100 {
        assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    }
    {
        let w = wire.lock().unwrap();
        assert_eq!(w.reads, 0, "the backend is not read without a buffer to put a frame in");
        assert_eq!(w.inbox.len(), 1000, "frames wait in the backend");
    }
    assert_eq!(handle.counters().rx_stalls, 100);
    assert_eq!(rx.avail_event(), 0, "the driver is asked to notify its first post");
    assert_eq!(irq.count(), 0);
    // Transmitting still works.
    write(&mem, 0x30000, &frame(20, 9));
    let h = tx.chain(&[(0x30000, 32, R)]);
    tx.publish(h);
    n.process_queue(1).unwrap();
    assert_eq!(wire.lock().unwrap().outbox.len(), 1);
    // The guest posts one buffer and notifies: the loop is told to resume.
    let _ = handle.ready_event().read();
    let h = rx.chain(&[(0x10000, 1024, W)]);
    rx.publish(h);
    n.process_queue(0).unwrap();
    assert!(event_pending(handle.ready_event()));
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h), 76));
    assert_eq!(wire.lock().unwrap().inbox.len(), 999);
    assert_eq!(rx.avail_event(), 1);
}

#[test]
fn a_frame_waits_for_enough_mergeable_buffers() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h0 = rx.chain(&[(0x10000, 1024, W)]);
    let h1 = rx.chain(&[(0x11000, 1024, W)]);
    rx.publish(h0);
    rx.publish(h1);
    let f = frame(3000, 10);
    wire.lock().unwrap().inbox.push_back(f.clone());
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], MRG | VIRTIO_RING_F_EVENT_IDX, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used_idx(), 0, "the chains taken were put back");
    assert_eq!(rx.avail_event(), 2, "notify on the next post, not on the ones put back");
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(wire.lock().unwrap().reads, 1, "the frame waits in the device, read once");
    let h2 = rx.chain(&[(0x12000, 1024, W)]);
    rx.publish(h2);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used_idx(), 3);
    assert_eq!(rx.used(2), (u32::from(h2), (f.len() - 2048) as u32));
    let got =
        [read(&mem, 0x10000, 1024), read(&mem, 0x11000, 1024), read(&mem, 0x12000, f.len() - 2048)].concat();
    assert_eq!(got, with_num_buffers(&f, 3));
}

#[test]
fn a_frame_no_whole_queue_can_hold_is_dropped() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, 4);
    let tx = Driver::at(&mem, 4, TX_RINGS);
    for i in 0..4 {
        let h = rx.chain(&[(0x10000 + i * 0x1000, 16, W)]);
        rx.publish(h);
    }
    wire.lock().unwrap().inbox.push_back(frame(1000, 11));
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], MRG, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used_idx(), 4);
    for i in 0..4 {
        assert_eq!(rx.used(i).1, 0);
    }
    assert_eq!(handle.counters().rx_dropped, 1);
}

/// Receive chains a driver should never post: each drops one frame, is
/// returned with used length 0, and nothing outside it is written; the
/// next frame goes to the next chain.
#[test]
fn hostile_receive_chains_drop_their_frame_only() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let mut hostile = vec![
        rx.chain(&[(0x10000, 1024, R)]),                     // device-readable
        rx.chain(&[(0x11000, 8, W)]),                        // shorter than the header
        rx.chain(&[(MEM_SIZE as u64 + 0x10_0000, 1024, W)]), // outside guest memory
        rx.chain(&[(0x12000, 512, W), (0x13000, 512, R)]),   // readable after writable
        rx.chain(&[(u64::MAX - 100, 1024, W)]),              // wraps the address space
    ];
    // A loop: two descriptors pointing at each other.
    let a = 14;
    rx.desc(a, 0x14000, 100, W | NEXT, a + 1);
    rx.desc(a + 1, 0x15000, 100, W | NEXT, a);
    hostile.push(a);
    for &h in &hostile {
        rx.publish(h);
    }
    let good = rx.chain(&[(0x16000, 2048, W)]);
    rx.publish(good);
    for i in 0..=hostile.len() {
        wire.lock().unwrap().inbox.push_back(frame(100, i as u8));
    }
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    for (i, &h) in hostile.iter().enumerate() {
        assert_eq!(rx.used(i as u16), (u32::from(h), 0), "hostile chain {i}");
    }
    let last = frame(100, hostile.len() as u8);
    assert_eq!(rx.used(hostile.len() as u16), (u32::from(good), last.len() as u32));
    assert_eq!(read(&mem, 0x16000, last.len()), with_num_buffers(&last, 1));
    check.assert_only_changed(&mem, &[rx.used_ring(), (0x16000, last.len())]);
    assert_eq!(handle.counters().rx_dropped, hostile.len() as u64);
}

#[test]
fn a_receive_buffer_the_iommu_maps_read_only_is_not_written() {
    let inner = memory();
    let mem = Arc::new(WriteProtected { inner: inner.clone(), window: (0x20000, 0x21000) });
    let (mut n, wire) = net::<WriteProtected>();
    let handle = n.handle();
    let mut rx = Driver::new(&inner, SIZE);
    let tx = Driver::at(&inner, SIZE, TX_RINGS);
    // A mergeable frame whose second chain is read-only: both chains are
    // returned unused.
    let h0 = rx.chain(&[(0x10000, 1024, W)]);
    let h1 = rx.chain(&[(0x20000, 1024, W)]);
    let h2 = rx.chain(&[(0x11000, 2048, W)]);
    for h in [h0, h1, h2] {
        rx.publish(h);
    }
    let f = frame(1500, 12);
    wire.lock().unwrap().inbox.extend([f.clone(), f.clone()]);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem, &[&rx, &tx], MRG, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h0), 0));
    assert_eq!(rx.used(1), (u32::from(h1), 0));
    assert_eq!(rx.used(2), (u32::from(h2), f.len() as u32));
    assert_eq!(read(&inner, 0x11000, f.len()), with_num_buffers(&f, 1));
}

/// Transmit chains a driver should never post: nothing reaches the
/// backend, each is returned with used length 0, guest memory is not
/// written, and the good chain after them is sent.
#[test]
fn hostile_transmit_chains_send_nothing() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    write(&mem, 0x20000, &frame(200, 13));
    let mut hostile = vec![
        tx.chain(&[(0x20000, 212, W)]),                                // device-writable
        tx.chain(&[(0x20000, 8, R)]),                                  // shorter than the header
        tx.chain(&[(0x20000, 12, R), (0x21000, 100, W)]),              // writable after readable
        tx.chain(&[(MEM_SIZE as u64 + 0x1000, 100, R)]),               // outside guest memory
        tx.chain(&[(0x20000, 12, R), (0x30000, FRAME_MAX as u32, R)]), // longer than any frame
        tx.chain(&[(u64::MAX - 10, 100, R)]),                          // wraps the address space
    ];
    let a = 12;
    tx.desc(a, 0x20000, 100, R | NEXT, a);
    hostile.push(a);
    for &h in &hostile {
        tx.publish(h);
    }
    let good = frame(50, 14);
    write(&mem, 0x40000, &good);
    let g = tx.chain(&[(0x40000, good.len() as u32, R)]);
    tx.publish(g);
    let check = MemCheck::new(&mem);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    n.process_queue(1).unwrap();
    assert_eq!(wire.lock().unwrap().outbox, [good]);
    for (i, &h) in hostile.iter().enumerate() {
        assert_eq!(tx.used(i as u16), (u32::from(h), 0), "hostile chain {i}");
    }
    check.assert_only_changed(&mem, &[tx.used_ring()]);
    assert_eq!(n.handle().counters().tx_dropped, hostile.len() as u64);
}

#[test]
fn protocol_violations_need_a_reset() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    // The available index runs more than a queue ahead on both queues.
    rx.set_avail_idx(SIZE + 5);
    tx.set_avail_idx(SIZE + 5);
    wire.lock().unwrap().inbox.push_back(frame(10, 15));
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(handle.receive(), RxOutcome::Stopped);
    assert_eq!(handle.receive(), RxOutcome::Stopped);
    assert!(matches!(n.process_queue(0), Err(DeviceError::Queue(_))), "reported at the next notification");
    assert!(n.process_queue(0).is_ok(), "reported once");
    assert!(matches!(n.process_queue(1), Err(DeviceError::Queue(_))));
    // A reset and a good driver bring it back.
    VirtioDevice::<GuestMemoryMmap>::reset(&mut n);
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = rx.chain(&[(0x10000, 100, W)]);
    rx.publish(h);
    wire.lock().unwrap().inbox.push_back(frame(10, 16));
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    // Every posted buffer used: the device stops reading the backend.
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h), 22));
}

#[test]
fn a_failing_backend_drops_frames_and_never_stops_the_device() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = rx.chain(&[(0x10000, 2048, W)]);
    rx.publish(h);
    {
        let mut w = wire.lock().unwrap();
        w.fail_reads = true;
        w.fail_writes = true;
    }
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    let _ = handle.ready_event().read();
    assert_eq!(handle.receive(), RxOutcome::BackendFailed);
    assert_eq!(rx.used_idx(), 0, "the receive buffer stays posted");
    for i in 0..3u64 {
        write(&mem, 0x20000 + i * 0x1000, &frame(40, i as u8));
        let c = tx.chain(&[(0x20000 + i * 0x1000, 52, R)]);
        tx.publish(c);
    }
    n.process_queue(1).unwrap();
    assert_eq!(tx.used_idx(), 3, "refused frames are still completed");
    assert!(event_pending(handle.ready_event()), "a transmit retries receiving after a failed read");
    let c = handle.counters();
    assert_eq!((c.tx_dropped, c.backend_errors), (3, 4));
    // The backend recovers (the TAP is up again).
    {
        let mut w = wire.lock().unwrap();
        w.fail_reads = false;
        w.fail_writes = false;
        w.inbox.push_back(frame(30, 16));
    }
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used(0), (u32::from(h), 42));
}

#[test]
fn a_runt_from_the_backend_is_dropped() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let tx = Driver::at(&mem, SIZE, TX_RINGS);
    let h = rx.chain(&[(0x10000, 2048, W)]);
    rx.publish(h);
    let f = frame(5, 17);
    wire.lock().unwrap().inbox.extend([vec![1, 2, 3], f.clone()]);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(handle.receive(), RxOutcome::NoBuffers);
    assert_eq!(rx.used_idx(), 1);
    assert_eq!(rx.used(0), (u32::from(h), f.len() as u32));
    assert_eq!(handle.counters().rx_dropped, 1);
}

#[test]
fn receiving_stops_at_its_budget() {
    let mem = memory();
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, 256);
    let tx = Driver::at(&mem, SIZE, 0x4000);
    for i in 0..200u64 {
        let h = rx.chain(&[(0x10000 + i * 0x100, 0x100, W)]);
        rx.publish(h);
    }
    for i in 0..200u32 {
        wire.lock().unwrap().inbox.push_back(frame(10, i as u8));
    }
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], 0, &irq);
    assert_eq!(handle.receive(), RxOutcome::Budget);
    assert_eq!(usize::from(rx.used_idx()), rx::RX_BUDGET);
}

/// A backend over one end of a `SOCK_SEQPACKET` socket pair, which keeps
/// frame boundaries like a TAP.
struct SocketBackend {
    fd: OwnedFd,
}

impl NetBackend for SocketBackend {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is writable memory of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
        };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    fn write_frame(&mut self, frame: &GuestFrame<'_>) -> std::io::Result<()> {
        let frame = frame.to_vec();
        // SAFETY: `frame` is readable memory of `frame.len()` bytes.
        let n = unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT)
        };
        usize::try_from(n).map(|_| ()).map_err(|_| std::io::Error::last_os_error())
    }

    fn set_offloads(&mut self, _: Offloads) -> std::io::Result<()> {
        Ok(())
    }

    fn readiness_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn socket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair(2) returns.
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn poll_readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// Both directions through a socket pair standing in for the TAP: the
/// readiness descriptor tells the loop when to receive, and frames cross
/// whole.
#[test]
fn frames_cross_a_socket_pair_both_ways() {
    let mem = memory();
    let (ours, theirs) = socket_pair();
    let mut n: Net<GuestMemoryMmap> = Net::new(MAC, Box::new(SocketBackend { fd: ours })).unwrap();
    let handle = n.handle();
    let mut rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    let heads: Vec<u16> = (0..8).map(|i| rx.chain(&[(0x10000 + i * 0x1000, 4096, W)])).collect();
    for &h in &heads {
        rx.publish(h);
    }
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], MRG | VIRTIO_RING_F_EVENT_IDX, &irq);
    assert!(!poll_readable(handle.backend_fd()));
    let inbound = frame(6000, 18);
    // SAFETY: `inbound` is readable memory of its length.
    let sent = unsafe { libc::send(theirs.as_raw_fd(), inbound.as_ptr().cast(), inbound.len(), 0) };
    assert_eq!(sent, inbound.len() as isize);
    assert!(poll_readable(handle.backend_fd()));
    assert_eq!(handle.receive(), RxOutcome::Drained);
    assert!(!poll_readable(handle.backend_fd()));
    let got = [read(&mem, 0x10000, 4096), read(&mem, 0x11000, inbound.len() - 4096)].concat();
    assert_eq!(got, with_num_buffers(&inbound, 2));

    let outbound = frame(1400, 19);
    write(&mem, 0x40000, &outbound);
    let h = tx.chain(&[(0x40000, outbound.len() as u32, R)]);
    tx.publish(h);
    n.process_queue(1).unwrap();
    let mut buf = vec![0u8; FRAME_MAX];
    // SAFETY: `buf` is writable memory of its length.
    let r = unsafe { libc::recv(theirs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    assert_eq!(&buf[..usize::try_from(r).unwrap()], &outbound[..]);
}
