//! [`GuestLogBudget`]: how many log messages a guest may cause, so that a
//! guest repeating a bad request cannot flood the host's log or spend its
//! time writing it.
//!
//! Every message a guest can trigger (a refused status transition, a
//! request the device cannot complete, an interrupt it cannot deliver...)
//! goes through [`guest_log!`](crate::guest_log) with the budget of the
//! device that logs it. A budget is a token bucket: [`BURST`] messages at
//! their own level, then one more every [`REFILL`]; the message that takes
//! the last token says so, and the others are demoted to debug level (so
//! `--log-level debug` still shows every one). The bucket refills whatever
//! the guest does, a device reset included: resetting is one of the cheap
//! ways to repeat a failing transition.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Messages a budget lets through at their level before limiting them.
pub const BURST: u32 = 10;
/// Time for one more message at its level once the burst is spent: a
/// guest that keeps failing can put at most 10 lines a minute per device
/// in the log.
pub const REFILL: Duration = Duration::from_secs(6);

/// What to do with one guest-triggered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Log it at its level.
    Log,
    /// Log it at its level, saying that the next ones are demoted: it took
    /// the last token.
    LogLast,
    /// Log it at debug level.
    Demote,
}

/// One device's budget of guest-triggered log messages (see the module
/// documentation). Shared by reference between threads.
#[derive(Debug)]
pub struct GuestLogBudget {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date (`None`: never used,
    /// full).
    since: Option<Instant>,
    /// The burst is spent and has not been refilled whole since.
    limiting: bool,
    demoted: u64,
}

impl Default for GuestLogBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestLogBudget {
    /// A full budget (`const`, so that a call site can keep its own in a
    /// `static`).
    pub const fn new() -> Self {
        Self { bucket: Mutex::new(Bucket { tokens: BURST, since: None, limiting: false, demoted: 0 }) }
    }

    /// Takes a token for one message, if there is one.
    pub fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    /// Messages demoted to debug level so far.
    pub fn demoted(&self) -> u64 {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner).demoted
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let since = *b.since.get_or_insert(now);
        let periods = now.saturating_duration_since(since).as_nanos() / REFILL.as_nanos();
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        if periods > 0 {
            b.tokens = b.tokens.saturating_add(periods).min(BURST);
            b.since = Some(now);
        }
        if b.tokens == BURST {
            b.limiting = false;
        }
        if b.tokens == 0 {
            b.demoted += 1;
            return Admission::Demote;
        }
        b.tokens -= 1;
        if b.tokens == 0 && !b.limiting {
            b.limiting = true;
            return Admission::LogLast;
        }
        Admission::Log
    }
}

/// `log::log!` through a [`GuestLogBudget`]:
/// `guest_log!(budget, log::Level::Warn, "format", args...)` with a
/// device's budget, or `guest_log!(static log::Level::Warn, "format",
/// args...)` with a budget of the call site's own (shared by every device
/// that logs there).
#[macro_export]
macro_rules! guest_log {
    (static $level:expr, $($arg:tt)+) => {{
        static BUDGET: $crate::log_limit::GuestLogBudget = $crate::log_limit::GuestLogBudget::new();
        $crate::guest_log!(BUDGET, $level, $($arg)+)
    }};
    ($budget:expr, $level:expr, $($arg:tt)+) => {
        match $crate::log_limit::GuestLogBudget::admit(&$budget) {
            $crate::log_limit::Admission::Log => $crate::__log::log!($level, $($arg)+),
            $crate::log_limit::Admission::LogLast => $crate::__log::log!(
                $level,
                "{} (the guest keeps causing messages like this one: more are logged at debug level)",
                format_args!($($arg)+)
            ),
            $crate::log_limit::Admission::Demote => $crate::__log::log!($crate::__log::Level::Debug, $($arg)+),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_refill_period() {
        let budget = GuestLogBudget::new();
        let start = Instant::now();
        budget.admit_at(start);
        let at = |budget: &GuestLogBudget, offset: Duration| budget.admit_at(start + offset);
        for _ in 0..BURST - 2 {
            assert_eq!(at(&budget, Duration::ZERO), Admission::Log);
        }
        assert_eq!(at(&budget, Duration::ZERO), Admission::LogLast);
        for _ in 0..10_000 {
            assert_eq!(at(&budget, Duration::ZERO), Admission::Demote);
        }
        assert_eq!(budget.demoted(), 10_000);
        // One token per period, no second notice while the flood goes on.
        assert_eq!(at(&budget, REFILL), Admission::Log);
        assert_eq!(at(&budget, REFILL), Admission::Demote);
        // Quiet long enough to refill the burst: the next burst starts over.
        let later = REFILL * (BURST + 2);
        for _ in 0..BURST - 1 {
            assert_eq!(at(&budget, later), Admission::Log);
        }
        assert_eq!(at(&budget, later), Admission::LogLast);
    }
}
