//! The log lines the store's retry loops repeat while their cause lasts (a full disk
//! fails every append, a fenced store every flush), each rate limited (`logs.rs`): logged
//! in full the first time, then as a count at most once per `log_repeat_interval_ms`.
//!
//! Owns [`RepeatedLogs`], one limiter per line; each part logs through its own line
//! (the writer `write_failed`, the flusher `flush_failed`, and so on), and the
//! maintenance task reports the count of a burst once it stops
//! ([`RepeatedLogs::report_quiet`]). The texts are the store's log texts and stay as
//! they are.
//!
//! Runs on the store's executor; limiters use `Cell`s, no locks. Deliberately not here:
//! the rate limiting itself (`logs.rs`).

use std::time::{Duration, Instant};

use crate::logs::RateLimited;

pub(super) const WRITE_FAILED: &str = "CommitLog write failed; abandoning unwritten appends";
pub(super) const FLUSH_FAILED: &str = "CommitLog flush failed; the store is fenced";
pub(super) const SEGMENT_AHEAD_FAILED: &str = "could not create the next segment ahead; the writer will";
pub(super) const BLOCKS_AHEAD_FAILED: &str = "could not prepare CommitLog blocks ahead";
pub(super) const RELOAD_FAILED: &str = "could not move ConsumeQueue entries past the visible limit back to memory";
pub(super) const CHECKPOINT_FAILED: &str = "checkpoint failed; will retry";
pub(super) const RETENTION_FAILED: &str = "retention failed; will retry";

/// The lines the store's retry loops log while their cause lasts — a full disk fails
/// every append, a fenced store every flush — each logged in full the first time and
/// then as a count at most once per `log_repeat_interval_ms` (`logs.rs`), so a disk-full
/// episode is a handful of lines rather than one per rejected send.
pub(super) struct RepeatedLogs {
    pub(super) write_failed: RateLimited,
    pub(super) flush_failed: RateLimited,
    pub(super) segment_ahead_failed: RateLimited,
    pub(super) blocks_ahead_failed: RateLimited,
    pub(super) reload_failed: RateLimited,
    pub(super) checkpoint_failed: RateLimited,
    pub(super) retention_failed: RateLimited,
}

impl RepeatedLogs {
    pub(super) fn new(interval_ms: u64) -> Self {
        let limited = || RateLimited::new(Duration::from_millis(interval_ms));
        RepeatedLogs {
            write_failed: limited(),
            flush_failed: limited(),
            segment_ahead_failed: limited(),
            blocks_ahead_failed: limited(),
            reload_failed: limited(),
            checkpoint_failed: limited(),
            retention_failed: limited(),
        }
    }

    /// Logs the count of every burst that has stopped (nothing since its last line for an
    /// interval), which no later occurrence would carry. The maintenance task calls this.
    pub(super) fn report_quiet(&self, now: Instant) {
        let all = [
            (&self.write_failed, WRITE_FAILED, true),
            (&self.flush_failed, FLUSH_FAILED, true),
            (&self.segment_ahead_failed, SEGMENT_AHEAD_FAILED, false),
            (&self.blocks_ahead_failed, BLOCKS_AHEAD_FAILED, false),
            (&self.reload_failed, RELOAD_FAILED, true),
            (&self.checkpoint_failed, CHECKPOINT_FAILED, true),
            (&self.retention_failed, RETENTION_FAILED, true),
        ];
        for (limited, message, is_error) in all {
            if let Some(held) = limited.take_quiet(now) {
                if is_error {
                    tracing::error!("{message}{held}");
                } else {
                    tracing::warn!("{message}{held}");
                }
            }
        }
    }
}
