//! Queue locks for orderly consumption, as a pure table: (consumer group, queue) →
//! (holder clientId, last renewal).
//!
//! An orderly push consumer must hold a queue's lock on the broker before it consumes
//! the queue, so that during a rebalance two clients never process the same queue at
//! once. A lock is granted when the queue is unlocked, already held by the asker, or its
//! holder's lock lapsed (not renewed for the table's max live time,
//! `REBALANCE_LOCK_MAX_LIVE_MS` in the broker); granting or asking again renews it.
//! Clients renew every 20 s and release on rebalance and shutdown (RocketMQ's
//! `RebalanceLockManager`).
//!
//! Invariants: a queue has at most one holder per group; a lapsed lock behaves exactly
//! as no lock (so sweeping lapsed entries changes no answer, it only frees memory); only
//! the holder can release a lock.
//!
//! Every method takes the time as an argument and is synchronous (see `state`), so tests
//! need no clock. Owned by the shard; changed
//! only by its operations (`ops::groups`: LOCK_BATCH_MQ, UNLOCK_BATCH_MQ, housekeeping).
//!
//! Deliberately not here: releasing locks when a client disconnects (RocketMQ lets them
//! lapse too, so a client that reconnects quickly keeps its queues), and forwarding
//! locks to replicas (`onlyThisBroker`: there is one broker per shard).

use std::collections::HashMap;

use rockshard_net::body::MessageQueue;
use tracing::debug;

#[derive(Debug, Clone, PartialEq, Eq)]
struct LockEntry {
    client_id: String,
    last_renewed_ms: i64,
}

impl LockEntry {
    fn live(&self, now_ms: i64, max_live_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_renewed_ms) <= max_live_ms
    }
}

/// The lock rules, without a clock.
#[derive(Debug)]
pub struct LockTable {
    groups: HashMap<String, HashMap<MessageQueue, LockEntry>>,
    max_live_ms: i64,
}

impl LockTable {
    pub fn new(max_live_ms: u64) -> LockTable {
        LockTable { groups: HashMap::new(), max_live_ms: i64::try_from(max_live_ms).unwrap_or(i64::MAX) }
    }

    /// Locks what it can of `queues` for `client_id`; returns every queue of the request
    /// the client now holds (each once, in request order).
    pub fn try_lock(
        &mut self,
        group: &str,
        client_id: &str,
        queues: &[MessageQueue],
        now_ms: i64,
    ) -> Vec<MessageQueue> {
        let max_live = self.max_live_ms;
        let locks = match self.groups.get_mut(group) {
            Some(l) => l,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let mut held = Vec::with_capacity(queues.len());
        for mq in queues {
            let granted = match locks.get_mut(mq) {
                None => {
                    locks.insert(mq.clone(), LockEntry { client_id: client_id.to_owned(), last_renewed_ms: now_ms });
                    true
                }
                Some(entry) if entry.client_id == client_id => {
                    entry.last_renewed_ms = now_ms;
                    true
                }
                Some(entry) if !entry.live(now_ms, max_live) => {
                    debug!(group, queue = ?mq, old = %entry.client_id, new = client_id, "lapsed queue lock taken over");
                    entry.client_id = client_id.to_owned();
                    entry.last_renewed_ms = now_ms;
                    true
                }
                Some(_) => false,
            };
            if granted && !held.contains(mq) {
                held.push(mq.clone());
            }
        }
        if locks.is_empty() {
            self.groups.remove(group);
        }
        held
    }

    /// Releases those of `queues` that `client_id` holds; returns how many.
    pub fn unlock(&mut self, group: &str, client_id: &str, queues: &[MessageQueue]) -> usize {
        let Some(locks) = self.groups.get_mut(group) else { return 0 };
        let mut released = 0;
        for mq in queues {
            if locks.get(mq).is_some_and(|e| e.client_id == client_id) {
                locks.remove(mq);
                released += 1;
            }
        }
        if locks.is_empty() {
            self.groups.remove(group);
        }
        released
    }

    /// Whether `client_id` holds a live lock on `mq` for `group`.
    pub fn is_locked(&self, group: &str, mq: &MessageQueue, client_id: &str, now_ms: i64) -> bool {
        self.groups
            .get(group)
            .and_then(|l| l.get(mq))
            .is_some_and(|e| e.client_id == client_id && e.live(now_ms, self.max_live_ms))
    }

    /// Whether any member of `group` holds a live lock here.
    pub fn group_holds_locks(&self, group: &str, now_ms: i64) -> bool {
        self.groups.get(group).is_some_and(|l| l.values().any(|e| e.live(now_ms, self.max_live_ms)))
    }

    /// Forgets lapsed locks; returns how many.
    pub fn sweep_expired(&mut self, now_ms: i64) -> usize {
        let max_live = self.max_live_ms;
        let mut swept = 0;
        self.groups.retain(|_, locks| {
            let before = locks.len();
            locks.retain(|_, e| e.live(now_ms, max_live));
            swept += before - locks.len();
            !locks.is_empty()
        });
        swept
    }

    /// Locks in the table, lapsed or not (for tests and metrics).
    pub fn len(&self) -> usize {
        self.groups.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: u64 = 60_000;

    fn mq(queue_id: i32) -> MessageQueue {
        MessageQueue { broker_name: "broker-a-s0".into(), queue_id, topic: "T".into() }
    }

    #[test]
    fn first_asker_gets_the_lock_and_others_do_not() {
        let mut t = LockTable::new(LIVE);
        assert_eq!(t.try_lock("G", "a", &[mq(0), mq(1)], 0), [mq(0), mq(1)]);
        assert_eq!(t.try_lock("G", "b", &[mq(1), mq(2)], 10), [mq(2)], "b gets only the free queue");
        assert!(t.is_locked("G", &mq(1), "a", 10));
        assert!(!t.is_locked("G", &mq(1), "b", 10));
        // Another group is independent.
        assert_eq!(t.try_lock("H", "b", &[mq(1)], 10), [mq(1)]);
        // Asking again for held queues answers them again (and renews).
        assert_eq!(t.try_lock("G", "a", &[mq(0), mq(0), mq(1)], 20), [mq(0), mq(1)], "duplicates answered once");
    }

    #[test]
    fn a_lapsed_lock_is_taken_over_and_renewal_keeps_it() {
        let mut t = LockTable::new(LIVE);
        t.try_lock("G", "a", &[mq(0), mq(1)], 0);
        // a renews queue 0 at 30 s; queue 1 is not renewed.
        t.try_lock("G", "a", &[mq(0)], 30_000);
        // At exactly the max live time the lock still holds.
        assert!(t.try_lock("G", "b", &[mq(1)], 60_000).is_empty());
        // One ms later queue 1 has lapsed; queue 0 was renewed and has not.
        assert_eq!(t.try_lock("G", "b", &[mq(0), mq(1)], 60_001), [mq(1)]);
        assert!(t.is_locked("G", &mq(1), "b", 60_001));
        assert!(!t.is_locked("G", &mq(1), "a", 60_001));
        assert!(t.is_locked("G", &mq(0), "a", 60_001));
        assert!(!t.is_locked("G", &mq(0), "a", 90_001), "lapsed for its holder too");
        assert!(t.group_holds_locks("G", 60_001));
        assert!(!t.group_holds_locks("G", 200_000));
    }

    #[test]
    fn only_the_holder_unlocks() {
        let mut t = LockTable::new(LIVE);
        t.try_lock("G", "a", &[mq(0), mq(1)], 0);
        assert_eq!(t.unlock("G", "b", &[mq(0), mq(1)]), 0);
        assert!(t.is_locked("G", &mq(0), "a", 1));
        assert_eq!(t.unlock("G", "a", &[mq(0), mq(5)]), 1);
        assert_eq!(t.try_lock("G", "b", &[mq(0), mq(1)], 2), [mq(0)]);
        assert_eq!(t.unlock("nope", "a", &[mq(1)]), 0);
        assert_eq!(t.unlock("G", "a", &[mq(1)]), 1);
        assert_eq!(t.unlock("G", "b", &[mq(0)]), 1);
        assert!(t.is_empty(), "a group without locks is forgotten");
    }

    #[test]
    fn sweeping_lapsed_locks_changes_no_answer() {
        let mut t = LockTable::new(LIVE);
        t.try_lock("G", "a", &[mq(0)], 0);
        t.try_lock("G", "b", &[mq(1)], 50_000);
        t.try_lock("H", "c", &[mq(0)], 0);
        assert_eq!(t.sweep_expired(60_000), 0);
        assert_eq!(t.sweep_expired(70_000), 2);
        assert_eq!(t.len(), 1);
        assert!(t.is_locked("G", &mq(1), "b", 70_000));
        assert_eq!(t.try_lock("G", "c", &[mq(0), mq(1)], 70_000), [mq(0)]);
    }
}
