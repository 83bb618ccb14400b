//! [`HotPageSource`]: one endpoint as the threads' hot pages know it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::invalidation_log::InvalidationLog;
use crate::thread_count::ThreadCounts;

/// Source of [`HotPageSource::uid`].
static NEXT_UID: AtomicU64 = AtomicU64::new(0);

/// One endpoint of an IOMMU as the threads' [`crate::hot_pages`] know
/// it: a number never reused, the log of removals from its translations,
/// and the translations its hot pages served. The IOMMU model owns it in
/// an `Arc` and records every removal in it.
#[derive(Debug)]
pub struct HotPageSource {
    /// Unique in the process and never reused, so a thread's page of an
    /// endpoint that is gone cannot serve another.
    pub(crate) uid: u64,
    invalidations: InvalidationLog,
    pub(crate) translations: ThreadCounts,
}

impl Default for HotPageSource {
    fn default() -> Self {
        Self::new()
    }
}

impl HotPageSource {
    /// A new endpoint: a fresh number, an empty log, no translations.
    pub fn new() -> Self {
        Self {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            invalidations: InvalidationLog::default(),
            translations: ThreadCounts::default(),
        }
    }

    /// The log of removals from the endpoint's translations.
    pub fn invalidations(&self) -> &InvalidationLog {
        &self.invalidations
    }

    /// Records the removal of the IOVA range `[start, end]` from the
    /// endpoint's translations: every thread drops its pages that overlap
    /// before their next use. Must happen before the request that removed
    /// it completes.
    pub fn record_removal(&self, start: u64, end: u64) {
        self.invalidations.record(start, end);
    }

    /// The translations the threads' hot pages served since the last
    /// [`HotPageSource::reset_translations`].
    pub fn translations(&self) -> u64 {
        self.translations.total()
    }

    /// Starts the count of [`HotPageSource::translations`] over (a new
    /// device at the endpoint).
    pub fn reset_translations(&self) {
        self.translations.reset();
    }
}
