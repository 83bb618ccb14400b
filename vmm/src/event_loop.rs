//! The main thread's event loop (event-manager): it waits for the stop
//! request, termination signals, host console input
//! ([`crate::console_input`]) and the virtio devices' queue notifications
//! (their ioeventfds) while the vCPU threads run the guest.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberId, SubscriberOps};
use vmm_sys_util::epoll::EventSet;

use crate::shutdown::{ExitReason, Shutdown};
use crate::signals::TerminationSignals;

/// What the loop holds: a handler of some of its descriptors.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Owns the event manager and the subscribers of the main thread.
pub struct EventLoop {
    manager: EventManager<Subscriber>,
    shutdown: Arc<Shutdown>,
    changes: SubscriberChanges,
    /// The manager's id of each subscriber added through `changes`.
    removable: HashMap<SubscriberToken, SubscriberId>,
}

/// Names a subscriber added through [`SubscriberChanges`], to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberToken(u64);

enum Change {
    Add(SubscriberToken, Subscriber),
    Remove(SubscriberToken),
}

/// Subscribers added and removed while the loop runs (devices plugged in
/// and out from a control-socket request, itself a subscriber): queued,
/// and applied by the loop between two rounds of events.
#[derive(Clone, Default)]
pub struct SubscriberChanges {
    queued: Arc<Queued>,
}

#[derive(Default)]
struct Queued {
    /// The last token handed out, and the changes not applied yet.
    changes: Mutex<(u64, Vec<Change>)>,
    /// Whether `changes` holds any: the loop checks this every round, and
    /// takes the lock only when there is something to apply.
    pending: AtomicBool,
}

impl std::fmt::Debug for SubscriberChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberChanges").finish_non_exhaustive()
    }
}

impl SubscriberChanges {
    /// Queues `subscriber` to be added; its token removes it.
    pub fn add(&self, subscriber: Subscriber) -> SubscriberToken {
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queued.0 += 1;
        let token = SubscriberToken(queued.0);
        queued.1.push(Change::Add(token, subscriber));
        self.queued.pending.store(true, Ordering::Release);
        token
    }

    /// Queues the removal of the subscriber `token` names.
    pub fn remove(&self, token: SubscriberToken) {
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queued.1.push(Change::Remove(token));
        self.queued.pending.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Change> {
        if !self.queued.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        let mut queued = self.queued.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut queued.1)
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

impl EventLoop {
    /// An event loop that watches the stop request and termination signals.
    pub fn new(shutdown: Arc<Shutdown>, signals: TerminationSignals) -> Result<Self> {
        let mut manager = EventManager::<Subscriber>::new().context("cannot create the event loop")?;
        manager.add_subscriber(Arc::new(Mutex::new(StopWatcher { shutdown: shutdown.clone(), signals })));
        Ok(Self { manager, shutdown, changes: SubscriberChanges::default(), removable: HashMap::new() })
    }

    /// Where subscribers that may leave while the loop runs are added.
    pub fn changes(&self) -> SubscriberChanges {
        self.changes.clone()
    }

    fn apply_changes(&mut self) {
        for change in self.changes.take() {
            match change {
                Change::Add(token, subscriber) => {
                    let id = self.manager.add_subscriber(subscriber);
                    self.removable.insert(token, id);
                }
                Change::Remove(token) => {
                    let Some(id) = self.removable.remove(&token) else { continue };
                    // Dropped here, on this thread, with its descriptors
                    // out of the loop.
                    if let Err(e) = self.manager.remove_subscriber(id) {
                        log::warn!("cannot remove an event-loop subscriber: {e:?}");
                    }
                }
            }
        }
    }

    /// Adds a device's subscriber (queue notifications, ...).
    pub fn add_subscriber(&mut self, subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>>) {
        self.manager.add_subscriber(subscriber);
    }

    /// Runs until a stop is requested; returns why.
    pub fn run(&mut self) -> Result<ExitReason> {
        loop {
            self.apply_changes();
            if let Some(reason) = self.shutdown.reason() {
                return Ok(reason);
            }
            self.manager.run().context("event loop failed")?;
        }
    }
}

/// Wakes the loop on the stop event; turns termination signals into stop
/// requests.
struct StopWatcher {
    shutdown: Arc<Shutdown>,
    signals: TerminationSignals,
}

impl MutEventSubscriber for StopWatcher {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.signals.as_raw_fd() {
            while let Some(sig) = self.signals.read() {
                log::info!("received signal {sig}, stopping the VM");
                self.shutdown.request(ExitReason::Signal(sig));
            }
        } else {
            // The reason is read by `EventLoop::run`; only drain the counter.
            let _ = self.shutdown.event().read();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in [self.shutdown.event().as_raw_fd(), self.signals.as_raw_fd()] {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::error!("cannot watch fd {fd}: {e:?}");
            }
        }
    }
}
