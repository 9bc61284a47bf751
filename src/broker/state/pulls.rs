//! Long-polling waiters of one shard, as a pure table: the pulls waiting for a message
//! in each queue, by topic and queue id.
//!
//! A pull that finds nothing new registers a waiter here, looks once more (a message
//! may have arrived meanwhile), then sleeps on it until its hold ends; the store's
//! arrival listener wakes every waiter of the queue a message arrived in, and shutdown
//! wakes them all (they see the shutdown and answer).
//!
//! Invariants: `count` is the number of registered waiters; a queue or topic without
//! waiters has no entry; waking never removes a waiter (its pull forgets it after it
//! woke, whatever woke it). Every method is synchronous, so no borrow of the shard's
//! table can cross the pull's `.await`.
//!
//! Deliberately not here: the waiting itself and the re-check (the shard's operations,
//! `ops::pulls`), and reading the queue (the store).

use std::collections::HashMap;
use std::rc::Rc;

use rockshard_local::Notify;

/// The waiters of one topic, by queue id.
type QueueWaiters = HashMap<i32, Vec<Rc<Notify>>>;

/// Pulls waiting for new messages, by topic and queue.
#[derive(Default)]
pub struct PullWaiters {
    waiting: HashMap<String, QueueWaiters>,
    count: usize,
}

impl PullWaiters {
    /// A new waiter for the queue; it is woken by [`PullWaiters::arrived`] until
    /// [`PullWaiters::forget`] removes it.
    pub fn register(&mut self, topic: &str, queue_id: i32) -> Rc<Notify> {
        let n = Rc::new(Notify::default());
        self.waiting.entry(topic.to_string()).or_default().entry(queue_id).or_default().push(n.clone());
        self.count += 1;
        n
    }

    pub fn forget(&mut self, topic: &str, queue_id: i32, n: &Rc<Notify>) {
        if let Some(queues) = self.waiting.get_mut(topic) {
            if let Some(list) = queues.get_mut(&queue_id) {
                if let Some(at) = list.iter().position(|x| Rc::ptr_eq(x, n)) {
                    list.swap_remove(at);
                    self.count -= 1;
                }
                if list.is_empty() {
                    queues.remove(&queue_id);
                }
            }
            if queues.is_empty() {
                self.waiting.remove(topic);
            }
        }
    }

    /// Wakes every pull waiting on the queue (they re-read and answer).
    pub fn arrived(&self, topic: &str, queue_id: i32) {
        if self.count == 0 {
            return;
        }
        if let Some(list) = self.waiting.get(topic).and_then(|q| q.get(&queue_id)) {
            for n in list {
                n.notify();
            }
        }
    }

    /// Wakes every waiting pull; used at shutdown (they see the shutdown and answer).
    pub fn wake_all(&self) {
        for queues in self.waiting.values() {
            for list in queues.values() {
                for n in list {
                    n.notify();
                }
            }
        }
    }

    /// Pulls waiting right now (for stats and tests).
    pub fn waiting(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::poll_once;

    use super::*;

    fn woken(n: &Notify) -> bool {
        futures_lite::future::block_on(poll_once(n.notified())).is_some()
    }

    #[test]
    fn an_arrival_wakes_the_waiters_of_its_queue_only() {
        let mut w = PullWaiters::default();
        let a = w.register("T", 0);
        let b = w.register("T", 0);
        let other_queue = w.register("T", 1);
        let other_topic = w.register("U", 0);
        assert_eq!(w.waiting(), 4);
        w.arrived("T", 0);
        assert!(woken(&a) && woken(&b));
        assert!(!woken(&other_queue) && !woken(&other_topic));
        w.forget("T", 0, &a);
        w.forget("T", 0, &a);
        assert_eq!(w.waiting(), 3, "forgetting twice forgets once");
        w.wake_all();
        assert!(woken(&b) && woken(&other_queue) && woken(&other_topic));
        for (topic, queue, n) in [("T", 0, &b), ("T", 1, &other_queue), ("U", 0, &other_topic)] {
            w.forget(topic, queue, n);
        }
        assert_eq!(w.waiting(), 0);
        assert!(w.waiting.is_empty(), "no entry is left for queues without waiters");
    }
}
