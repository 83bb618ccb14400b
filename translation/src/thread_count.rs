//! Counts that one thread adds to and others read: the translations each
//! thread serves from its hot pages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A count only one thread adds to: a plain load and store, where a
/// shared counter needs an atomic read-modify-write, which costs more
/// than the rest of a hot-page translation. Others only read it.
#[derive(Debug, Default)]
pub(crate) struct ThreadCount(AtomicU64);

impl ThreadCount {
    /// Adds one; only the owning thread calls it.
    pub(crate) fn add_one(&self) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(1), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The threads' own counts of one thing, and what counts that are gone
/// had counted.
#[derive(Debug, Default)]
pub(crate) struct ThreadCounts {
    /// What retired counts had counted since the last reset.
    retired: AtomicU64,
    /// The live counts, each with its value at the last reset.
    live: Mutex<Vec<(Arc<ThreadCount>, u64)>>,
}

impl ThreadCounts {
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<ThreadCount>, u64)>> {
        // A panic while it was held (a bug) costs only statistics.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new count for the calling thread, part of [`ThreadCounts::total`]
    /// until it is [`ThreadCounts::retire`]d.
    pub(crate) fn add(&self) -> Arc<ThreadCount> {
        let count = Arc::new(ThreadCount::default());
        self.live().push((count.clone(), 0));
        count
    }

    /// Keeps what `count` counted; its thread counts no more with it.
    pub(crate) fn retire(&self, count: &Arc<ThreadCount>) {
        let mut live = self.live();
        if let Some(i) = live.iter().position(|(c, _)| Arc::ptr_eq(c, count)) {
            let (c, base) = live.swap_remove(i);
            self.retired.fetch_add(c.get().wrapping_sub(base), Ordering::Relaxed);
        }
    }

    /// Everything counted since the last reset.
    pub(crate) fn total(&self) -> u64 {
        let live = self.live();
        let own: u64 = live.iter().map(|(c, base)| c.get().wrapping_sub(*base)).sum();
        self.retired.load(Ordering::Relaxed).wrapping_add(own)
    }

    /// Back to zero.
    pub(crate) fn reset(&self) {
        let mut live = self.live();
        for (count, base) in live.iter_mut() {
            *base = count.get();
        }
        self.retired.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_retired_counts_add_up_and_reset() {
        let counts = ThreadCounts::default();
        let a = counts.add();
        let b = counts.add();
        a.add_one();
        a.add_one();
        b.add_one();
        assert_eq!(counts.total(), 3);
        counts.retire(&a);
        assert_eq!(counts.total(), 3);
        // Retiring twice counts nothing twice.
        counts.retire(&a);
        assert_eq!(counts.total(), 3);
        counts.reset();
        assert_eq!(counts.total(), 0);
        b.add_one();
        assert_eq!(counts.total(), 1);
    }
}
