//! [`InvalidationLog`]: the removals from one endpoint's translations,
//! numbered, so that a cache kept away from the endpoint (a thread's
//! [`crate::hot_pages`]) can tell whether anything was removed since it
//! last looked, and drop exactly what overlaps.
//!
//! Every removal of a translation (for the virtio-iommu: UNMAP's ranges;
//! ATTACH, DETACH, reset, `bypass` changes and device removal: everything;
//! for VT-d: every context-cache and IOTLB invalidation and every change
//! of the root table or of translation enable) is recorded before the
//! request that made it completes. Checking costs one atomic load while
//! nothing changed; the ranges are read under a lock only when something
//! did. The log keeps the last [`LOG_LENGTH`] removals: a cache further
//! behind drops everything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Removals kept for caches that are behind.
pub(crate) const LOG_LENGTH: usize = 64;

/// One removal: its number and the IOVA range `[start, end]` it removed.
type Removal = (u64, u64, u64);

/// The numbered removals from one endpoint's translations.
#[derive(Debug, Default)]
pub struct InvalidationLog {
    /// The number of the last removal (0: none yet).
    generation: AtomicU64,
    /// The last [`LOG_LENGTH`] removals, oldest first.
    recent: Mutex<VecDeque<Removal>>,
}

impl InvalidationLog {
    fn recent(&self) -> MutexGuard<'_, VecDeque<Removal>> {
        // A panic while it was held (a bug) must not stop every removal
        // from being recorded.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of the last removal. A translation that starts by
    /// reading it sees every removal made by requests completed before.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records the removal of `[start, end]`; called while the endpoint's
    /// IOTLB is changed, before the request that removed it completes.
    pub(crate) fn record(&self, start: u64, end: u64) {
        let mut recent = self.recent();
        let number = self.generation.load(Ordering::Relaxed).wrapping_add(1);
        if recent.len() == LOG_LENGTH {
            recent.pop_front();
        }
        recent.push_back((number, start, end));
        self.generation.store(number, Ordering::Release);
    }

    /// Calls `removed(start, end)` for every removal after number `seen`
    /// and returns the number of the last one; `None` if removals the log
    /// no longer holds came after `seen` (then everything must go).
    pub(crate) fn since(&self, seen: u64, mut removed: impl FnMut(u64, u64)) -> Option<u64> {
        let recent = self.recent();
        let last = self.generation.load(Ordering::Relaxed);
        if last == seen {
            return Some(last);
        }
        match recent.front() {
            Some(&(oldest, _, _)) if oldest <= seen.wrapping_add(1) && seen < last => {}
            _ => return None,
        }
        for &(_, start, end) in recent.iter().filter(|(number, _, _)| *number > seen) {
            removed(start, end);
        }
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn since(log: &InvalidationLog, seen: u64) -> Option<(u64, Vec<(u64, u64)>)> {
        let mut ranges = Vec::new();
        log.since(seen, |s, e| ranges.push((s, e))).map(|last| (last, ranges))
    }

    #[test]
    fn reports_the_removals_after_what_was_seen() {
        let log = InvalidationLog::default();
        assert_eq!(log.generation(), 0);
        assert_eq!(since(&log, 0), Some((0, vec![])));
        log.record(0x1000, 0x1fff);
        log.record(0x5000, 0x5fff);
        assert_eq!(log.generation(), 2);
        assert_eq!(since(&log, 0), Some((2, vec![(0x1000, 0x1fff), (0x5000, 0x5fff)])));
        assert_eq!(since(&log, 1), Some((2, vec![(0x5000, 0x5fff)])));
        assert_eq!(since(&log, 2), Some((2, vec![])));
    }

    #[test]
    fn a_cache_behind_the_log_drops_everything() {
        let log = InvalidationLog::default();
        for i in 0..=LOG_LENGTH as u64 {
            log.record(i << 12, (i << 12) | 0xfff);
        }
        let last = LOG_LENGTH as u64 + 1;
        assert_eq!(log.generation(), last);
        // Removal 1 fell out of the log: a cache that saw none cannot
        // catch up range by range.
        assert_eq!(since(&log, 0), None);
        let (seen, ranges) = since(&log, 1).unwrap();
        assert_eq!((seen, ranges.len()), (last, LOG_LENGTH));
        // A number from the future (a cache of an endpoint that was
        // replaced) is not trusted either.
        assert_eq!(since(&log, last + 5), None);
    }
}
