//! One broker shard: the state a core owns and the dispatch of requests to it.
//!
//! Runs on shard `id`'s glommio executor, and only there: the store, consumer groups,
//! consumer offsets, queue locks, long-polling waiters and delayed-message state are
//! plain `RefCell`s owned by this `Shard`. Other shards reach it only through
//! `control` messages (topic changes).
//!
//! Each request code belongs to one module (one file per concern, the mini-redis
//! split): `send`, `pull`, `groups`, `offsets`, `locks`, `sendback`, `topics`, `admin`.
//! Unknown codes get REQUEST_CODE_NOT_SUPPORTED and the connection stays up. Every
//! refusal (`remoting::rejections::is_rejection`) is logged at WARN here, rate-limited,
//! oneway requests' included; their answers are then dropped here, not in the handlers.
//!
//! Invariant: no `RefCell` borrow of shard state is held across an `.await`.

pub mod control;
pub mod delay;
pub mod replication;
pub mod topics;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;

use rockshard_net::code::{request, response};
use rockshard_net::{rockshard, RemotingCommand};
use rockshard_storage::sync::Notify;
use rockshard_storage::{StorageError, Store};
use tracing::warn;

use crate::broker::control::ControlPlane;
use crate::broker::{admin, groups, locks, offsets, pull, schedule, send, sendback};
use crate::config::BrokerConfig;
use crate::remoting::rejections::{RejectionLog, RequestSummary};
use crate::remoting::server::{Connection, Service, Signal};
use crate::Result;

pub struct Shard {
    pub id: usize,
    pub config: Rc<BrokerConfig>,
    /// `<broker_name>-s<id>`: the broker name clients see for this shard.
    pub broker_name: String,
    /// `ip:port` clients reach this shard at (what routes carry).
    pub addr: String,
    /// The same address as stored in records' STOREHOST (and so in message ids).
    pub store_host: SocketAddr,
    /// Round-robin position for sends that leave the queue to the broker.
    next_queue: Cell<u32>,
    pub store: Store,
    pub groups: groups::ConsumerGroups,
    pub offsets: offsets::ConsumerOffsets,
    pub locks: locks::QueueLocks,
    pub pulls: pull::PullWaiters,
    pub schedule: schedule::Scheduler,
    pub control: ControlPlane,
    pub shutdown: Rc<Signal>,
    /// One per NameServer registration task: woken when topic configuration changed and
    /// NameServers should hear of it now rather than at the next periodic registration.
    pub register_wakers: RefCell<Vec<Rc<Notify>>>,
    /// Bumped on every topic change; sent as the registration's data version.
    pub topic_version: Cell<u64>,
    /// Per-shard topics (retry topics) this shard created whose creation some other
    /// shard has not confirmed: the next request for one sends it to them again
    /// (`topics::ensure_topic_on_every_shard`).
    pub unfinished_topics: RefCell<HashSet<String>>,
    /// This shard's Raft group member when the node is part of a replicated group; set
    /// once, right after the shard opens (the replica's hooks need the shard).
    pub replica: OnceCell<replication::ShardReplica>,
    /// WARN lines for the requests this shard refuses (rate-limited).
    pub rejections: RejectionLog,
}

impl Shard {
    /// Opens shard `id`'s store (recovering it) and the state files beside it.
    pub async fn open(
        id: usize,
        config: Rc<BrokerConfig>,
        control: ControlPlane,
        shutdown: Rc<Signal>,
    ) -> Result<Rc<Shard>> {
        let store = Store::open(config.store_config(id)).await?;
        let offsets = offsets::ConsumerOffsets::load(&store).await?;
        let schedule = schedule::Scheduler::load(&store).await?;
        let shard = Rc::new(Shard {
            id,
            broker_name: config.shard_broker_name(id),
            addr: config.shard_advertised(id),
            store_host: SocketAddr::new(config.advertise_ip, config.port + id as u16),
            next_queue: Cell::new(0),
            groups: groups::ConsumerGroups::new(&config),
            offsets,
            locks: locks::QueueLocks::new(),
            pulls: pull::PullWaiters::default(),
            schedule,
            control,
            shutdown,
            register_wakers: RefCell::new(Vec::new()),
            topic_version: Cell::new(crate::broker::now_ms() as u64),
            unfinished_topics: RefCell::new(HashSet::new()),
            replica: OnceCell::new(),
            rejections: RejectionLog::new(config.shard_broker_name(id)),
            store,
            config,
        });
        topics::ensure_system_topics(&shard).await?;
        Ok(shard)
    }

    /// Starts the shard's background work: long-polling wake-ups, offset persistence,
    /// client expiry, delayed delivery, cross-shard control.
    pub fn start_tasks(self: &Rc<Self>) {
        pull::start(self);
        groups::start(self);
        offsets::start(self);
        schedule::start(self);
        topics::start(self);
    }

    /// Persists what is in memory and closes the store (flush + checkpoint).
    pub async fn close(&self) -> Result<()> {
        self.pulls.wake_all_for_shutdown();
        if let Err(e) = self.offsets.persist(&self.store).await {
            warn!(shard = self.id, error = %e, "saving consumer offsets at shutdown failed");
        }
        if let Err(e) = self.schedule.persist(&self.store).await {
            warn!(shard = self.id, error = %e, "saving delay progress at shutdown failed");
        }
        self.store.close().await?;
        Ok(())
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
        for w in self.register_wakers.borrow().iter() {
            w.notify();
        }
    }
}

/// An answer with `code` and a remark; for the many "no, because" replies.
pub fn reply(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_to(req, code, Some(remark.into())))
}

/// The answer for a request whose header could not be read.
pub fn bad_header(req: &RemotingCommand, e: rockshard_net::Error) -> Option<RemotingCommand> {
    reply(req, response::INVALID_PARAMETER, format!("request code {}: {e}", req.code))
}

/// The wire code for a message that was not stored: the store's reason, or the
/// replication's (not the leader, not committed in time).
pub fn store_failure_code(e: &crate::Error) -> i32 {
    match e {
        crate::Error::Storage(se) => storage_error_code(se),
        crate::Error::Replication(re) => replication::error_code(re),
        _ => response::SYSTEM_ERROR,
    }
}

/// The wire code a storage failure deserves (RocketMQ's mapping of PutMessageStatus).
pub fn storage_error_code(e: &StorageError) -> i32 {
    match e {
        StorageError::FlushTimeout { .. } => response::FLUSH_DISK_TIMEOUT,
        StorageError::Busy { .. } => response::SYSTEM_BUSY,
        StorageError::MessageTooLarge { .. } | StorageError::InvalidArgument(_) | StorageError::Message(_) => {
            response::MESSAGE_ILLEGAL
        }
        StorageError::Closed => response::SERVICE_NOT_AVAILABLE,
        _ => response::SYSTEM_ERROR,
    }
}

impl Service for Shard {
    async fn handle(self: Rc<Self>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
        let shard = self;
        let summary = RequestSummary::of(&req);
        use request::*;
        let answer = match req.code {
            SEND_MESSAGE | SEND_MESSAGE_V2 | SEND_BATCH_MESSAGE => send::handle(&shard, conn, req).await,
            PULL_MESSAGE | LITE_PULL_MESSAGE => pull::handle(&shard, conn, req).await,
            HEART_BEAT | UNREGISTER_CLIENT | CHECK_CLIENT_CONFIG | GET_CONSUMER_LIST_BY_GROUP => {
                groups::handle(&shard, conn, req).await
            }
            QUERY_CONSUMER_OFFSET
            | UPDATE_CONSUMER_OFFSET
            | GET_MAX_OFFSET
            | GET_MIN_OFFSET
            | SEARCH_OFFSET_BY_TIMESTAMP
            | GET_EARLIEST_MSG_STORETIME => offsets::handle(&shard, conn, req).await,
            LOCK_BATCH_MQ | UNLOCK_BATCH_MQ => locks::handle(&shard, conn, req).await,
            CONSUMER_SEND_MSG_BACK | END_TRANSACTION => sendback::handle(&shard, conn, req).await,
            UPDATE_AND_CREATE_TOPIC => topics::handle(&shard, conn, req).await,
            rockshard::RAFT_MESSAGES | rockshard::RAFT_STATUS => replication::handle(&shard, conn, req).await,
            _ => admin::handle(&shard, conn, req).await,
        };
        if let Some(answer) = &answer {
            shard.rejections.note(summary, answer, conn.peer());
        }
        // Oneway requests are never answered (REMOTING.md §7 quirk 9). Handlers still
        // return their refusals so the log above shows them: their senders never will.
        answer.filter(|_| !summary.oneway)
    }

    fn on_close(&self, conn: &Connection) {
        self.groups.connection_closed(conn);
    }
}
