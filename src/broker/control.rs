//! Control messages between shards: topic changes, nothing on the data path.
//!
//! Every shard owns its share of every topic's queues, so creating, changing or
//! deleting a topic must reach all shards. The shard that receives the request applies
//! it and broadcasts it; each other shard applies its own share when the message
//! arrives. Messages are owned values sent over glommio's cross-executor channels (one
//! single-producer channel per ordered pair of shards), so no shard ever touches
//! another's state.
//!
//! Invariant: applying a message is idempotent (an upsert of the same spec twice leaves
//! the same topic), so a topic request that several shards receive at once — a stock
//! RocketMQ admin sends `updateTopic` to every broker of a cluster — converges.
//!
//! Runs on each shard's executor. Connecting a glommio channel end waits for its peer,
//! so every end connects in its own task and nothing waits on another shard at start.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use rockshard_storage::sync::Notify;
use rockshard_storage::FlushMode;
use tracing::warn;

use crate::limits::{CONTROL_CHANNEL_CAPACITY, CONTROL_CONNECT_MAX_MS};

/// A topic as the whole broker sees it: queue counts are totals over all shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: u32,
    /// `None`: keep the topic's current mode (or the default for a new topic).
    pub flush: Option<FlushMode>,
    pub order: bool,
}

#[derive(Debug, Clone)]
pub enum ControlMsg {
    UpsertTopic(TopicSpec),
    DeleteTopic(String),
    /// Create a per-shard topic (a group's retry topic) on every shard that lacks it.
    EnsureLocalTopic {
        name: String,
        queues: u32,
        perm: u32,
    },
}

/// One shard's ends of the mesh, made on the main thread and moved to the shard.
pub struct Endpoints {
    senders: Vec<(usize, SharedSender<ControlMsg>)>,
    receivers: Vec<SharedReceiver<ControlMsg>>,
}

/// All channels between `shards` shards.
pub struct Mesh {
    endpoints: Vec<Endpoints>,
}

impl Mesh {
    pub fn new(shards: usize) -> Mesh {
        let mut endpoints: Vec<Endpoints> =
            (0..shards).map(|_| Endpoints { senders: Vec::new(), receivers: Vec::new() }).collect();
        for from in 0..shards {
            for to in 0..shards {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(CONTROL_CHANNEL_CAPACITY);
                    endpoints[from].senders.push((to, tx));
                    endpoints[to].receivers.push(rx);
                }
            }
        }
        Mesh { endpoints }
    }

    pub fn into_endpoints(self) -> Vec<Endpoints> {
        self.endpoints
    }
}

type Peers = Rc<RefCell<Vec<(usize, Option<Rc<ConnectedSender<ControlMsg>>>)>>>;

/// A shard's side of the mesh.
pub struct ControlPlane {
    id: usize,
    peers: Peers,
    inbox: Rc<RefCell<VecDeque<ControlMsg>>>,
    inbox_wake: Rc<Notify>,
}

impl ControlPlane {
    /// Connects this shard's ends in background tasks; returns at once.
    pub async fn connect(id: usize, endpoints: Endpoints) -> ControlPlane {
        let peers: Peers = Rc::new(RefCell::new(endpoints.senders.iter().map(|(to, _)| (*to, None)).collect()));
        for (slot, (_, tx)) in endpoints.senders.into_iter().enumerate() {
            let peers = peers.clone();
            glommio::spawn_local(async move {
                let connected = Rc::new(tx.connect().await);
                peers.borrow_mut()[slot].1 = Some(connected);
            })
            .detach();
        }
        let inbox = Rc::new(RefCell::new(VecDeque::new()));
        let inbox_wake = Rc::new(Notify::default());
        for rx in endpoints.receivers {
            let (inbox, wake) = (inbox.clone(), inbox_wake.clone());
            glommio::spawn_local(async move {
                let rx = rx.connect().await;
                while let Some(msg) = rx.recv().await {
                    inbox.borrow_mut().push_back(msg);
                    wake.notify();
                }
            })
            .detach();
        }
        ControlPlane { id, peers, inbox, inbox_wake }
    }

    /// Sends `msg` to every other shard.
    pub async fn broadcast(&self, msg: ControlMsg) {
        let count = self.peers.borrow().len();
        for slot in 0..count {
            // Peers connect within moments of start; wait for a late one, boundedly.
            let mut waited_ms = 0;
            let sender = loop {
                let (to, sender) = self.peers.borrow()[slot].clone();
                match sender {
                    Some(s) => break Some(s),
                    None if waited_ms >= CONTROL_CONNECT_MAX_MS => {
                        warn!(shard = self.id, to, "control channel never connected; message not sent");
                        break None;
                    }
                    None => {
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                        waited_ms += 5;
                    }
                }
            };
            if let Some(s) = sender {
                if s.send(msg.clone()).await.is_err() {
                    warn!(shard = self.id, "a shard's control channel is closed (it is shutting down)");
                }
            }
        }
    }

    /// The next message from another shard.
    pub async fn next(&self) -> ControlMsg {
        loop {
            if let Some(m) = self.inbox.borrow_mut().pop_front() {
                return m;
            }
            self.inbox_wake.notified().await;
        }
    }
}

/// Shard `shard`'s share of `total` queues spread over `shards` shards: as even as
/// possible, lower shards take the remainder. Shares sum to `total`.
pub fn queue_share(total: u32, shards: usize, shard: usize) -> u32 {
    let shards = shards as u32;
    let shard = shard as u32;
    total / shards + u32::from(shard < total % shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_the_total_and_differ_by_at_most_one() {
        for shards in 1..=9 {
            for total in 0..40 {
                let shares: Vec<u32> = (0..shards).map(|s| queue_share(total, shards, s)).collect();
                assert_eq!(shares.iter().sum::<u32>(), total);
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{shares:?}");
            }
        }
        assert_eq!(queue_share(16, 4, 3), 4);
        assert_eq!(queue_share(1, 2, 1), 0);
    }
}
