//! The middle layer of the broker: one shard and its operations, the only writers of
//! shard state.
//!
//! [`Shard`] owns what a core owns — its store, consumer groups, consumer offsets, queue
//! locks, long-polling waiters, delayed-delivery progress and replica — and its fields
//! are private to this module: the handlers above and the background tasks reach the
//! state only through the methods of these files, one per concern:
//! `append` (storing messages, the delay rule), `topics` (topic changes, on every
//! shard), `offsets`, `groups` (groups and queue locks), `pulls` (long polling), `delay`
//! (delayed delivery), `replication` (the Raft group), `reads` (what the layers above
//! may read), and `control` (the channels between shards).
//!
//! Invariants:
//! - Runs on shard `id`'s glommio executor, and only there; other shards reach it only
//!   through `control` messages (topic changes).
//! - Every table is held in a `StateCell` (rule 3 of the broker's `mod.rs`).
//! - An operation imports `state` and other operations, never `handlers` or `tasks`.
//!
//! Deliberately not here: reading requests and answering them (`handlers`, `dispatch`),
//! deciding when background work runs (`tasks`), and the pure rules (`state`).

pub mod append;
pub mod control;
pub mod delay;
pub mod groups;
pub mod offsets;
pub mod pulls;
pub mod reads;
pub mod replication;
pub mod topics;

use std::cell::{Cell, OnceCell};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::sync::Semaphore;
use rockshard_local::Notify;
use rockshard_net::RemotingCommand;
use rockshard_storage::Store;
use tracing::warn;

use self::control::ControlPlane;
use self::groups::Groups;
use crate::broker::now_ms;
use crate::broker::state::locks::LockTable;
use crate::broker::state::offsets::ConsumerOffsets;
use crate::broker::state::pulls::PullWaiters;
use crate::broker::state::StateCell;
use crate::config::BrokerConfig;
use crate::limits::REBALANCE_LOCK_MAX_LIVE_MS;
use crate::remoting::rejections::{RejectionLog, RequestSummary};
use crate::Result;
use rockshard_local::Signal;

/// One broker shard: the state a core owns. Its fields are private to `ops`.
pub struct Shard {
    id: usize,
    config: Rc<BrokerConfig>,
    /// `<broker_name>-s<id>`: the broker name clients see for this shard.
    broker_name: String,
    /// `ip:port` clients reach this shard at (what routes carry).
    addr: String,
    /// The same address as stored in records' STOREHOST (and so in message ids).
    store_host: SocketAddr,
    /// Round-robin position for sends that leave the queue to the broker.
    next_queue: Cell<u32>,
    store: Store,
    groups: StateCell<Groups>,
    /// Opaque of the next broker-initiated request; clients do not answer them, but
    /// distinct values keep captures readable.
    next_opaque: Cell<i32>,
    offsets: StateCell<ConsumerOffsets>,
    /// One offsets save at a time (the periodic one and shutdown's may overlap).
    offsets_saving: Semaphore,
    locks: StateCell<LockTable>,
    pulls: StateCell<PullWaiters>,
    schedule: delay::Scheduler,
    control: ControlPlane,
    shutdown: Rc<Signal>,
    /// One per NameServer registration task: woken when topic configuration changed and
    /// NameServers should hear of it now rather than at the next periodic registration.
    register_wakers: StateCell<Vec<Rc<Notify>>>,
    /// Bumped on every topic change; sent as the registration's data version.
    topic_version: Cell<u64>,
    /// Per-shard topics (retry topics) this shard created whose creation some other
    /// shard has not confirmed: the next request for one sends it to them again
    /// (`ensure_topic_on_every_shard`).
    unfinished_topics: StateCell<HashSet<String>>,
    /// This shard's Raft group member when the node is part of a replicated group; set
    /// once, right after the shard opens (the replica's hooks need the shard).
    replica: OnceCell<replication::ShardReplica>,
    /// WARN lines for the requests this shard refuses (rate-limited).
    rejections: RejectionLog,
}

impl Shard {
    /// Opens shard `id`'s store (recovering it) and the state files beside it, and
    /// creates the topics the shard keeps for itself.
    pub async fn open(
        id: usize,
        config: Rc<BrokerConfig>,
        control: ControlPlane,
        shutdown: Rc<Signal>,
    ) -> Result<Rc<Shard>> {
        let store = Store::open(config.store_config(id)).await?;
        let offsets = offsets::load(&store).await?;
        let schedule = delay::Scheduler::load(&store).await?;
        let shard = Rc::new(Shard {
            id,
            broker_name: config.shard_broker_name(id),
            addr: config.shard_advertised(id),
            store_host: SocketAddr::new(config.advertise_ip, config.port + id as u16),
            next_queue: Cell::new(0),
            groups: StateCell::default(),
            next_opaque: Cell::new(1),
            offsets: StateCell::new(offsets),
            offsets_saving: Semaphore::new(1),
            locks: StateCell::new(LockTable::new(REBALANCE_LOCK_MAX_LIVE_MS)),
            pulls: StateCell::default(),
            schedule,
            control,
            shutdown,
            register_wakers: StateCell::default(),
            topic_version: Cell::new(now_ms() as u64),
            unfinished_topics: StateCell::default(),
            replica: OnceCell::new(),
            rejections: RejectionLog::new(config.shard_broker_name(id)),
            store,
            config,
        });
        shard.ensure_system_topics().await?;
        Ok(shard)
    }

    /// Persists what is in memory and closes the store (flush + checkpoint). Waiting
    /// pulls are woken first, so they answer before the store goes.
    pub async fn close(&self) -> Result<()> {
        self.wake_all_pulls();
        if let Err(e) = self.persist_offsets().await {
            warn!(shard = self.id, error = %e, "saving consumer offsets at shutdown failed");
        }
        if let Err(e) = self.persist_delay_progress().await {
            warn!(shard = self.id, error = %e, "saving delay progress at shutdown failed");
        }
        self.store.close().await?;
        Ok(())
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// `<broker_name>-s<id>`: the broker name clients see for this shard.
    pub fn broker_name(&self) -> &str {
        &self.broker_name
    }

    /// `ip:port` clients reach this shard at (what routes carry).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address stored in records' STOREHOST (and so in message ids).
    pub fn store_host(&self) -> SocketAddr {
        self.store_host
    }

    /// The shard's shutdown signal: set once it stops taking requests.
    pub fn shutdown(&self) -> &Rc<Signal> {
        &self.shutdown
    }

    /// The channels to the other shards of this process.
    pub fn control(&self) -> &ControlPlane {
        &self.control
    }

    /// A queue for a send that did not pick one (queue id < 0), round robin.
    pub fn next_queue(&self, queues: i32) -> i32 {
        let n = self.next_queue.get().wrapping_add(1);
        self.next_queue.set(n);
        (n % queues.max(1) as u32) as i32
    }

    /// Whether this shard takes writes: always alone, only as its group's Raft leader
    /// when replicated.
    pub fn is_leader(&self) -> bool {
        self.replica.get().is_none_or(|r| r.is_leader())
    }

    /// The brokerId this shard registers under: 0 (master) alone or as Raft leader, its
    /// Raft id as a follower (a slave that consumers may read from).
    pub fn broker_id(&self) -> i64 {
        match (self.replica.get(), self.config.replication.as_ref()) {
            (Some(r), Some(repl)) if !r.is_leader() => repl.node_id as i64,
            _ => 0,
        }
    }

    /// Marks topic configuration changed: NameServers hear of it at once.
    pub fn topics_changed(&self) {
        self.topic_version.set(self.topic_version.get() + 1);
        self.register_wakers.read(|wakers| {
            for w in wakers {
                w.notify();
            }
        });
    }

    /// The topic table's data version (what registrations carry).
    pub fn topic_version(&self) -> u64 {
        self.topic_version.get()
    }

    /// Adds a registration task's waker: it is woken whenever topics change.
    pub fn on_topics_changed(&self, waker: Rc<Notify>) {
        self.register_wakers.write(|wakers| wakers.push(waker));
    }

    /// Logs `answer` at WARN when it refuses `request` (rate-limited per shard).
    pub fn note_answer(&self, request: RequestSummary, answer: &RemotingCommand, peer: SocketAddr) {
        self.rejections.note(request, answer, peer);
    }
}
