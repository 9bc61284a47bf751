//! Repeated log lines, aggregated: the first occurrence of a repeating event is logged in
//! full, later ones within an interval are only counted, and the count rides on the next
//! line logged ("1423 more like this in the last 10 s").
//!
//! Why: an error that every request meets (a full disk fails every append) would
//! otherwise log one line per request — thousands a second — and bury everything else.
//! The operator needs to see the first one in full, and then that it is still going on
//! and how often.
//!
//! Use: one [`RateLimited`] per log site (or per kind of event), kept by whoever owns the
//! site; before logging, ask [`RateLimited::allow`]; log only when it says so, with the
//! [`Suppressed`] it returns appended to the message (it prints nothing when nothing was
//! held back). A task that runs now and then may call [`RateLimited::take_quiet`] to log
//! the count of a burst that ended, which no later occurrence would otherwise report.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use rockshard_storage::logs::RateLimited;
//! let rejected = RateLimited::new(Duration::from_secs(10));
//! # let error = "disk full";
//! if let Some(held) = rejected.allow(Instant::now()) {
//!     tracing::warn!(%error, "request rejected{held}");
//! }
//! ```
//!
//! It lives in the storage crate, the lowest crate that logs, so the store's own retry
//! loops use it; the broker re-exports it as `rockshard::logs`.
//!
//! Threading: executor-local (`Cell`s, not `Sync`): each shard keeps its own, which is
//! also what an operator wants (a line per shard says which shard is in trouble).
//! Deliberately not here: the log call itself (callers keep their level, message and
//! fields, so a line still reads and filters like any other), and keys: one instance
//! aggregates one kind of event, whatever its details.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use crate::limits::LOG_REPEAT_INTERVAL_MS;

/// Lets a repeating log line through at most `burst` times per interval (once, unless
/// made [`RateLimited::with_burst`]) and counts the rest.
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    /// Lines let through per interval.
    burst: u32,
    /// When the current interval began (its first line); `None` before the first.
    window_start: Cell<Option<Instant>>,
    /// Lines let through in the current interval.
    in_window: Cell<u32>,
    /// Occurrences held back since the last line let through.
    held: Cell<u64>,
}

/// What was held back before a line that may be logged now: `count` occurrences over
/// `over` (the time since the previous line). Displays as
/// ` (N more like this in the last T s)`, or as nothing when `count` is 0, so it can end
/// any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub over: Duration,
}

impl RateLimited {
    /// Lets at most one line through per `interval`; a zero interval lets every one
    /// through.
    pub const fn new(interval: Duration) -> Self {
        RateLimited::with_burst(interval, 1)
    }

    /// Lets the first `burst` lines of each `interval` through (at least one): for a
    /// site whose lines differ in detail worth seeing (which client, which request), so
    /// that a few of a burst are shown whole.
    pub const fn with_burst(interval: Duration, burst: u32) -> Self {
        RateLimited {
            interval,
            burst: if burst == 0 { 1 } else { burst },
            window_start: Cell::new(None),
            in_window: Cell::new(0),
            held: Cell::new(0),
        }
    }

    /// One occurrence at `now`. `Some` (with what was held back since the last line) if
    /// it should be logged: the first ever, one of the first `burst` of an interval, or
    /// the first once `interval` has passed since the interval began. `None` if it
    /// should not: it is counted instead.
    pub fn allow(&self, now: Instant) -> Option<Suppressed> {
        match self.window_start.get() {
            Some(start) if now.saturating_duration_since(start) < self.interval => {
                if self.in_window.get() < self.burst {
                    self.in_window.set(self.in_window.get() + 1);
                    return Some(Suppressed {
                        count: self.held.replace(0),
                        over: now.saturating_duration_since(start),
                    });
                }
                self.held.set(self.held.get().saturating_add(1));
                None
            }
            last => Some(self.let_through(last, now)),
        }
    }

    /// The count of occurrences held back, once `interval` has passed since the current
    /// interval began and none came to carry it; `None` otherwise. For a periodic task,
    /// so that the tail of a burst that stopped is reported too. The next occurrence
    /// after a report is counted against the report's time, like after any other line.
    pub fn take_quiet(&self, now: Instant) -> Option<Suppressed> {
        let last = self.window_start.get()?;
        if self.held.get() == 0 || now.saturating_duration_since(last) < self.interval {
            return None;
        }
        let held = self.let_through(Some(last), now);
        // The report counts as the new interval's lines, all of them.
        self.in_window.set(self.burst);
        Some(held)
    }

    /// Starts a new interval at `now` with this line as its first.
    fn let_through(&self, last: Option<Instant>, now: Instant) -> Suppressed {
        let over = last.map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        self.window_start.set(Some(now));
        self.in_window.set(1);
        Suppressed { count: self.held.replace(0), over }
    }
}

impl Default for RateLimited {
    /// At most one line per [`LOG_REPEAT_INTERVAL_MS`].
    fn default() -> Self {
        RateLimited::new(Duration::from_millis(LOG_REPEAT_INTERVAL_MS))
    }
}

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        // Whole seconds read best at the default interval; shorter ones (tests, a tuned
        // store) would all show as "0 s".
        if self.over >= Duration::from_secs(1) {
            write!(f, " ({} more like this in the last {} s)", self.count, self.over.as_secs_f64().round())
        } else {
            write!(f, " ({} more like this in the last {} ms)", self.count, self.over.as_millis())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_line_goes_through_in_full_and_the_rest_are_counted_per_interval() {
        let t0 = Instant::now();
        let limited = RateLimited::new(10 * SECOND);
        assert_eq!(limited.allow(t0), Some(Suppressed { count: 0, over: Duration::ZERO }));
        // 1,000 more within the interval: all held back.
        for i in 1..=1_000u32 {
            assert_eq!(limited.allow(t0 + SECOND * i / 101), None, "occurrence {i}");
        }
        // The first one past the interval carries the count and the time it covers.
        let held = limited.allow(t0 + 10 * SECOND).expect("an interval passed");
        assert_eq!(held, Suppressed { count: 1_000, over: 10 * SECOND });
        assert_eq!(held.to_string(), " (1000 more like this in the last 10 s)");
        // And the count starts again from that line.
        assert_eq!(limited.allow(t0 + 11 * SECOND), None);
        assert_eq!(limited.allow(t0 + 12 * SECOND), None);
        assert_eq!(limited.allow(t0 + 25 * SECOND), Some(Suppressed { count: 2, over: 15 * SECOND }));
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_logged_in_full() {
        let t0 = Instant::now();
        let limited = RateLimited::new(10 * SECOND);
        assert!(limited.allow(t0).is_some());
        let held = limited.allow(t0 + 3_600 * SECOND).expect("long after");
        assert_eq!(held.count, 0);
        assert_eq!(held.to_string(), "", "nothing was held back, so nothing is added");
    }

    #[test]
    fn the_tail_of_a_burst_is_reported_once_the_interval_has_passed() {
        let t0 = Instant::now();
        let limited = RateLimited::new(10 * SECOND);
        assert_eq!(limited.take_quiet(t0), None, "nothing ever happened");
        assert!(limited.allow(t0).is_some());
        assert_eq!(limited.take_quiet(t0 + 20 * SECOND), None, "nothing was held back");
        // A burst: its first line goes through, the next four are held back.
        assert_eq!(limited.allow(t0 + 20 * SECOND).map(|s| s.count), Some(0));
        for i in 1..=4 {
            assert_eq!(limited.allow(t0 + 20 * SECOND + i * SECOND), None);
        }
        // Not before an interval has passed since the last line...
        assert_eq!(limited.take_quiet(t0 + 29 * SECOND), None);
        // ... then once, with the count.
        assert_eq!(limited.take_quiet(t0 + 30 * SECOND), Some(Suppressed { count: 4, over: 10 * SECOND }));
        assert_eq!(limited.take_quiet(t0 + 60 * SECOND), None);
        // An occurrence right after the report is counted against it.
        assert_eq!(limited.allow(t0 + 31 * SECOND), None);
        assert_eq!(limited.allow(t0 + 40 * SECOND), Some(Suppressed { count: 1, over: 10 * SECOND }));
    }

    #[test]
    fn a_burst_lets_the_first_lines_of_each_interval_through() {
        let t0 = Instant::now();
        let limited = RateLimited::with_burst(10 * SECOND, 3);
        for i in 0..3 {
            assert_eq!(limited.allow(t0 + i * SECOND).map(|s| s.count), Some(0), "line {i}");
        }
        for i in 3..8 {
            assert_eq!(limited.allow(t0 + i * SECOND), None, "occurrence {i}");
        }
        // The next interval starts with the first line after it; it carries the count.
        assert_eq!(limited.allow(t0 + 10 * SECOND), Some(Suppressed { count: 5, over: 10 * SECOND }));
        assert_eq!(limited.allow(t0 + 11 * SECOND), Some(Suppressed { count: 0, over: SECOND }));
        assert_eq!(limited.allow(t0 + 12 * SECOND).map(|s| s.count), Some(0));
        assert_eq!(limited.allow(t0 + 13 * SECOND), None);
        // The tail is reported, and then that interval has no room left.
        assert_eq!(limited.take_quiet(t0 + 20 * SECOND), Some(Suppressed { count: 1, over: 10 * SECOND }));
        assert_eq!(limited.allow(t0 + 21 * SECOND), None);
        assert_eq!(RateLimited::with_burst(SECOND, 0).burst, 1, "a burst of 0 would log nothing");
    }

    #[test]
    fn a_zero_interval_lets_every_line_through() {
        let t0 = Instant::now();
        let limited = RateLimited::new(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(limited.allow(t0).map(|s| s.count), Some(0));
        }
    }

    #[test]
    fn a_clock_read_out_of_order_counts_as_within_the_interval() {
        // Two tasks may read the clock, then log in the other order.
        let t0 = Instant::now() + 5 * SECOND;
        let limited = RateLimited::new(10 * SECOND);
        assert!(limited.allow(t0).is_some());
        assert_eq!(limited.allow(t0 - SECOND), None);
    }

    #[test]
    fn short_spans_show_in_milliseconds() {
        let s = Suppressed { count: 3, over: Duration::from_millis(250) };
        assert_eq!(s.to_string(), " (3 more like this in the last 250 ms)");
        assert_eq!(RateLimited::default().interval, Duration::from_millis(LOG_REPEAT_INTERVAL_MS));
    }
}
