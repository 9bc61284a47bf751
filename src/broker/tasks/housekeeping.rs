//! A shard's housekeeping tasks: clients silent past their expiry and lapsed queue locks
//! dropped every few seconds, consumer offsets saved every
//! `CONSUMER_OFFSET_PERSIST_INTERVAL_MS` when they changed, and waiting pulls woken when
//! the shard shuts down.
//!
//! Each runs on the shard's executor until shutdown and calls operations only; the
//! shard's `close` saves the offsets one last time.
//!
//! Deliberately not here: the expiry and lock rules (`state::groups`, `state::locks`)
//! and the offsets file (`ops::offsets`).

use std::rc::Rc;
use std::time::Duration;

use tracing::warn;

use crate::broker::now_ms;
use crate::broker::ops::Shard;
use crate::limits::{
    CLIENT_HOUSEKEEPING_INTERVAL_MAX_MS, CLIENT_HOUSEKEEPING_INTERVAL_MIN_MS, CONSUMER_OFFSET_PERSIST_INTERVAL_MS,
};

/// How often expired clients are looked for: a quarter of the expiry (so a client goes
/// at most 25 % late), within named bounds.
fn housekeeping_interval(expiry_ms: u64) -> Duration {
    Duration::from_millis(
        (expiry_ms / 4).clamp(CLIENT_HOUSEKEEPING_INTERVAL_MIN_MS, CLIENT_HOUSEKEEPING_INTERVAL_MAX_MS),
    )
}

/// Starts the shard's client housekeeping: expired clients and queue locks are dropped
/// every few seconds until shutdown.
pub fn start_client_expiry(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let tick = housekeeping_interval(shard.config().client_expiry_ms);
        loop {
            let stop = shard.shutdown().sleep(tick).await;
            if stop {
                break;
            }
            let now = now_ms();
            shard.expire_clients(now);
            shard.sweep_locks(now);
        }
    })
    .detach();
}

/// Saves changed offsets every `CONSUMER_OFFSET_PERSIST_INTERVAL_MS` until shutdown (the
/// shard's `close` saves the last time).
pub fn start_offset_saves(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let tick = Duration::from_millis(CONSUMER_OFFSET_PERSIST_INTERVAL_MS);
        loop {
            let stop = shard.shutdown().sleep(tick).await;
            if stop {
                break;
            }
            if let Err(e) = shard.persist_offsets().await {
                // Kept dirty: the next tick tries again.
                warn!(shard = shard.id(), error = %e, "saving consumer offsets failed");
            }
        }
    })
    .detach();
}

/// Wakes every waiting pull when the shard shuts down (they see the shutdown and
/// answer), so shutdown does not wait for their holds to end.
pub fn start_pull_wakeup(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        shard.shutdown().wait().await;
        shard.wake_all_pulls();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_interval_is_a_quarter_of_the_expiry_within_bounds() {
        assert_eq!(housekeeping_interval(120_000), Duration::from_millis(CLIENT_HOUSEKEEPING_INTERVAL_MAX_MS));
        assert_eq!(housekeeping_interval(4_000), Duration::from_millis(1_000));
        assert_eq!(housekeeping_interval(1), Duration::from_millis(CLIENT_HOUSEKEEPING_INTERVAL_MIN_MS));
    }
}
