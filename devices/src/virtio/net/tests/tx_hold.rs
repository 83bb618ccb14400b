//! The transmit hold: after a notification that sent several frames (or
//! any, once a hold has paid), the driver's notifications stay off, the
//! hold timer fires by itself, what the driver queued meanwhile goes out
//! when it does, and notifications come back on at the first check that
//! finds nothing.

use super::*;

/// Waits up to `ms` milliseconds for `fd` to be readable.
fn readable_within(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// Writes `f` at `addr` and makes it available as a one-buffer chain.
fn queue_frame(mem: &GuestMemoryMmap, tx: &mut Driver, addr: u64, f: &[u8]) {
    write(mem, addr, f);
    let h = tx.chain(&[(addr, f.len() as u32, R)]);
    tx.publish(h);
}

/// A device started by a driver that negotiated `features`, with the
/// driver's transmit queue and the interrupts it got.
struct Started<'a> {
    n: Net<GuestMemoryMmap>,
    wire: Arc<Mutex<Wire>>,
    handle: NetHandle<GuestMemoryMmap>,
    tx: Driver<'a>,
    irq: Arc<Interrupts>,
}

fn started(mem: &Arc<GuestMemoryMmap>, features: u64) -> Started<'_> {
    let (mut n, wire) = net::<GuestMemoryMmap>();
    let handle = n.handle();
    let rx = Driver::new(mem, SIZE);
    let tx = Driver::at(mem, SIZE, TX_RINGS);
    let irq = Arc::new(Interrupts::default());
    activate(&mut n, mem.clone(), &[&rx, &tx], features, &irq);
    Started { n, wire, handle, tx, irq }
}

#[test]
fn frames_queued_during_a_hold_go_without_a_notification() {
    let mem = memory();
    let Started { mut n, wire, handle, mut tx, .. } = started(&mem, VIRTIO_RING_F_EVENT_IDX);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(200 + i, i as u8)).collect();

    queue_frame(&mem, &mut tx, 0x10000, &frames[0]);
    queue_frame(&mem, &mut tx, 0x11000, &frames[1]);
    n.process_queue(1).unwrap();
    // The frames of the notification go at once.
    assert_eq!(wire.lock().unwrap().outbox, frames[..2]);
    assert_eq!(tx.used_idx(), 2);
    // Held: `avail_event` still names the first frame, which the driver
    // has passed, so it does not notify for the next ones.
    assert_eq!(tx.avail_event(), 0);
    assert!(readable_within(handle.hold_fd(), 5000), "the hold ends by itself");

    queue_frame(&mem, &mut tx, 0x12000, &frames[2]);
    handle.hold_ended();
    assert_eq!(wire.lock().unwrap().outbox, frames[..3]);
    assert_eq!(tx.used_idx(), 3);
    assert_eq!(tx.avail_event(), 0, "sent something: held again");
    assert!(readable_within(handle.hold_fd(), 5000), "and the timer armed again");

    handle.hold_ended();
    // Nothing new: notifications are back on for the next frame.
    assert_eq!(tx.avail_event(), 3);
    assert!(!readable_within(handle.hold_fd(), 50), "no hold without frames");
    let c = handle.counters();
    assert_eq!((c.tx_frames, c.tx_notifications, c.tx_dropped), (3, 1, 0));

    // A stray end of hold sends nothing and turns nothing off.
    handle.hold_ended();
    assert_eq!(wire.lock().unwrap().outbox.len(), 3);
    assert_eq!(tx.avail_event(), 3);
}

/// Behind the IOMMU a guest sends one frame per notification, each long
/// after the last: holding would cost a timer per frame and gather
/// nothing. Once a hold has found frames, one frame is enough to hold.
#[test]
fn one_frame_per_notification_holds_only_after_a_hold_paid() {
    let mem = memory();
    let Started { mut n, wire, handle, mut tx, .. } = started(&mem, VIRTIO_RING_F_EVENT_IDX);
    for i in 0..3u16 {
        queue_frame(&mem, &mut tx, 0x10000 + u64::from(i) * 0x1000, &frame(100, i as u8));
        n.process_queue(1).unwrap();
        assert_eq!(tx.avail_event(), i + 1, "notifications stay on");
    }
    assert!(!readable_within(handle.hold_fd(), 50), "no timer armed");

    // Two at once: held; the hold finds one more: it paid.
    queue_frame(&mem, &mut tx, 0x13000, &frame(100, 3));
    queue_frame(&mem, &mut tx, 0x14000, &frame(100, 4));
    n.process_queue(1).unwrap();
    assert_eq!(tx.avail_event(), 3);
    assert!(readable_within(handle.hold_fd(), 5000));
    queue_frame(&mem, &mut tx, 0x15000, &frame(100, 5));
    handle.hold_ended();
    assert!(readable_within(handle.hold_fd(), 5000));
    handle.hold_ended();
    assert_eq!(tx.avail_event(), 6, "nothing more: notifications on");

    // A single frame now holds ...
    queue_frame(&mem, &mut tx, 0x16000, &frame(100, 6));
    n.process_queue(1).unwrap();
    assert_eq!(tx.avail_event(), 6);
    assert!(readable_within(handle.hold_fd(), 5000));
    // ... until a hold finds nothing.
    handle.hold_ended();
    assert_eq!(tx.avail_event(), 7);
    queue_frame(&mem, &mut tx, 0x17000, &frame(100, 7));
    n.process_queue(1).unwrap();
    assert_eq!(tx.avail_event(), 8, "that hold did not pay: no hold");
    assert!(!readable_within(handle.hold_fd(), 50));
    assert_eq!(wire.lock().unwrap().outbox.len(), 8);
}

#[test]
fn without_event_idx_the_hold_sets_no_notify() {
    let mem = memory();
    let Started { mut n, wire, handle, mut tx, irq } = started(&mem, 0);
    let no_notify = VRING_USED_F_NO_NOTIFY as u16;

    queue_frame(&mem, &mut tx, 0x10000, &frame(300, 7));
    queue_frame(&mem, &mut tx, 0x11000, &frame(300, 8));
    n.process_queue(1).unwrap();
    assert_eq!(tx.used_flags(), no_notify);
    queue_frame(&mem, &mut tx, 0x12000, &frame(300, 9));
    handle.hold_ended();
    assert_eq!(tx.used_flags(), no_notify);
    handle.hold_ended();
    assert_eq!(tx.used_flags(), 0);
    assert_eq!(wire.lock().unwrap().outbox.len(), 3);
    // Each drain that used chains interrupted the driver (no used_event).
    assert_eq!(irq.kinds(), [InterruptKind::Queue(1); 2]);
}

#[test]
fn a_notification_with_nothing_to_send_does_not_hold() {
    let mem = memory();
    let Started { mut n, handle, tx, .. } = started(&mem, 0);
    n.process_queue(1).unwrap();
    assert_eq!(tx.used_flags(), 0);
    assert!(!readable_within(handle.hold_fd(), 50));
}

#[test]
fn a_reset_ends_the_hold() {
    let mem = memory();
    let Started { mut n, wire, handle, mut tx, irq } = started(&mem, VIRTIO_RING_F_EVENT_IDX);
    queue_frame(&mem, &mut tx, 0x10000, &frame(100, 9));
    queue_frame(&mem, &mut tx, 0x11000, &frame(100, 10));
    n.process_queue(1).unwrap();
    queue_frame(&mem, &mut tx, 0x12000, &frame(100, 11));
    VirtioDevice::<GuestMemoryMmap>::reset(&mut n);
    // The timer still fires; its end of hold finds no queue.
    assert!(readable_within(handle.hold_fd(), 5000));
    handle.hold_ended();
    assert_eq!(wire.lock().unwrap().outbox.len(), 2);
    assert!(!readable_within(handle.hold_fd(), 50), "and holds nothing");

    // A new driver starts with notifications on.
    let rx = Driver::new(&mem, SIZE);
    let mut tx = Driver::at(&mem, SIZE, TX_RINGS);
    activate(&mut n, mem.clone(), &[&rx, &tx], VIRTIO_RING_F_EVENT_IDX, &irq);
    queue_frame(&mem, &mut tx, 0x13000, &frame(100, 12));
    queue_frame(&mem, &mut tx, 0x14000, &frame(100, 13));
    n.process_queue(1).unwrap();
    assert_eq!(wire.lock().unwrap().outbox.len(), 4);
    assert!(readable_within(handle.hold_fd(), 5000));
}

#[test]
fn a_violation_found_at_the_end_of_a_hold_is_reported_at_the_next_notification() {
    let mem = memory();
    let Started { mut n, wire, handle, mut tx, .. } = started(&mem, VIRTIO_RING_F_EVENT_IDX);
    queue_frame(&mem, &mut tx, 0x10000, &frame(100, 12));
    queue_frame(&mem, &mut tx, 0x11000, &frame(100, 13));
    n.process_queue(1).unwrap();
    // The available index jumps more than a queue ahead while held.
    tx.set_avail_idx(2 + SIZE + 5);
    assert!(readable_within(handle.hold_fd(), 5000));
    handle.hold_ended();
    assert!(!readable_within(handle.hold_fd(), 50), "holding stopped");
    // Notifications are on again, so the driver's next one arrives ...
    assert_eq!(tx.avail_event(), 2);
    // ... and reports it.
    assert!(matches!(n.process_queue(1), Err(DeviceError::Queue(_))));
    assert_eq!(wire.lock().unwrap().outbox.len(), 2);
}
