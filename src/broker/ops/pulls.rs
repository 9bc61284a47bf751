//! Long polling as operations of one shard: a pull that found nothing waits here for a
//! message in its queue, the store's arrivals wake the waiters, and shutdown wakes them
//! all.
//!
//! Invariant: a waiter registers before it re-checks the queue, so a message that
//! arrives between the pull's read and its wait is never missed. The waiter table
//! (`state::pulls`) is borrowed only inside synchronous closures: the wait itself holds
//! an `Rc` of the waiter, never a borrow of the table.
//!
//! Runs on the shard's executor; the arrival listener runs inside the store's append,
//! on the same executor. Deliberately not here: reading the queue and answering the pull
//! (`handlers::pull`).

use std::rc::Rc;
use std::time::Instant;

use rockshard_storage::QueueOffset;

use super::Shard;

impl Shard {
    /// Connects the store's arrivals to the waiters: every message appended to a queue
    /// wakes the pulls waiting on it. Holds the shard weakly (the store lives inside it).
    pub fn listen_for_arrivals(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        self.store.set_arrival_listener(move |topic, queue_id, _max| {
            if let Some(shard) = weak.upgrade() {
                shard.pulls.read(|p| p.arrived(topic, queue_id));
            }
        });
    }

    /// Waits until a message may have arrived in the queue past `offset`, `deadline`
    /// passed, or the shard is woken for shutdown; returns at once if one is there
    /// already. The caller reads again either way.
    pub async fn wait_for_arrival(&self, topic: &str, queue_id: i32, offset: QueueOffset, deadline: Instant) {
        // Register first, then look again: an arrival during the caller's read would
        // otherwise go unnoticed until the hold ends.
        let waiter = self.pulls.write(|p| p.register(topic, queue_id));
        let arrived = self.store.queue_offsets(topic, queue_id).is_some_and(|(_, max)| max > offset);
        if !arrived {
            let left = deadline.saturating_duration_since(Instant::now());
            futures_lite::future::or(waiter.notified(), glommio::timer::sleep(left)).await;
        }
        self.pulls.write(|p| p.forget(topic, queue_id, &waiter));
    }

    /// Wakes every waiting pull; at shutdown (they see the shutdown and answer).
    pub fn wake_all_pulls(&self) {
        self.pulls.read(|p| p.wake_all());
    }

    /// Pulls waiting right now (for stats and tests).
    pub fn pulls_waiting(&self) -> usize {
        self.pulls.read(|p| p.waiting())
    }
}
