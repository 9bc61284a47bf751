//! The delayed-message task of one shard: it runs delivery passes
//! ([`Shard::deliver_due`]) and sleeps in between, from the start of the shard's work to
//! its shutdown.
//!
//! Timing: the task sleeps until the earliest due time a pass reported, and never longer
//! than `SCHEDULE_POLL_INTERVAL_MS` so newly parked messages are noticed. The shortest
//! delay (1 s) is ten poll intervals, so a message is always seen before it is due and
//! goes out within a few milliseconds of its time. After a restart, overdue messages go
//! out at once, oldest first per level. A pass that stopped on its batch bound is
//! followed by another at once (yielding to the shard's other tasks in between). Progress
//! is saved by a pass at most every `SCHEDULE_PERSIST_INTERVAL_MS`.
//!
//! In a replicated group only the leader delivers: a follower's appends would be
//! refused, and the leader's deliveries reach it through the log.
//!
//! Runs on the shard's executor; calls operations only. Deliberately not here: what a
//! pass does (`ops::delay`) and the progress rules (`state::delay`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::broker::now_ms;
use crate::broker::ops::Shard;
use crate::limits::{SCHEDULE_PERSIST_INTERVAL_MS, SCHEDULE_POLL_INTERVAL_MS};

/// Starts the shard's delayed-message task; it ends when the shard shuts down.
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let mut last_save = Instant::now();
        let shutdown = shard.shutdown().clone();
        while !shutdown.is_set() {
            // In a replicated group only the leader delivers: a follower's appends would
            // be refused, and the leader's deliveries reach it through the log.
            if !shard.is_leader() {
                let poll = Duration::from_millis(SCHEDULE_POLL_INTERVAL_MS);
                futures_lite::future::or(glommio::timer::sleep(poll), shutdown.wait()).await;
                continue;
            }
            let save = last_save.elapsed() >= Duration::from_millis(SCHEDULE_PERSIST_INTERVAL_MS);
            if save {
                last_save = Instant::now();
            }
            let pass = shard.deliver_due(save).await;
            if pass.more {
                // A backlog: keep going, but let the shard's other tasks run in between.
                glommio::yield_if_needed().await;
                continue;
            }
            let poll = SCHEDULE_POLL_INTERVAL_MS as i64;
            let sleep_ms = pass.wake_at_ms.map_or(poll, |at| (at - now_ms()).clamp(1, poll));
            futures_lite::future::or(glommio::timer::sleep(Duration::from_millis(sleep_ms as u64)), shutdown.wait())
                .await;
        }
    })
    .detach();
}
