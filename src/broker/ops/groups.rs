//! Consumer and producer groups, and queue locks, as operations of one shard: heartbeats,
//! unregistering, connections closing, expiry, and telling a consumer group's members
//! when its membership changed (NOTIFY_CONSUMER_IDS_CHANGED, oneway), so the clients
//! rebalance at once instead of at their next 20 s rebalance.
//!
//! The rules are the tables' (`state::groups`, `state::locks`); this file gives them the
//! time and real connections (weak references, so a table never keeps a closed
//! connection alive), and sends the notices they return.
//!
//! Invariants: a table is borrowed only inside a synchronous closure, and notices are
//! sent after that borrow ended; a closed connection is never written to.
//!
//! Runs on the shard's executor. Deliberately not here: creating a group's retry topic
//! (the heartbeat handler asks `ops::topics`), and expiring on a timer
//! (`tasks::housekeeping` calls [`Shard::expire_clients`]).

use std::rc::{Rc, Weak};

use rockshard_net::body::{HeartbeatData, MessageQueue, SubscriptionData};
use rockshard_net::code::request;
use rockshard_net::headers::{CommandHeader, ConsumerGroupRequestHeader};
use rockshard_net::{LanguageCode, RemotingCommand};
use tracing::{debug, info};

use super::Shard;
use crate::broker::now_ms;
use crate::broker::state::groups::{Client, ConsumerGroupView, GroupTable, MemberView, Notice};
use crate::limits::CLIENT_EXPIRY_SWEEP_MAX;
use crate::remoting::server::Connection;

/// The shard's group table: members' handles are their connections.
pub type Groups = GroupTable<Weak<Connection>>;

/// Who a heartbeat came from: the request's client fields and the connection it came on.
pub struct HeartbeatFrom<'a> {
    pub conn: &'a Rc<Connection>,
    pub language: LanguageCode,
    pub version: i32,
}

impl Shard {
    /// Registers every consumer and producer group a heartbeat names, and tells the
    /// consumer groups whose membership changed. Returns heartbeat V2's answer: whether
    /// the client should send its subscriptions in full.
    pub fn heartbeat(&self, hb: &HeartbeatData, from: HeartbeatFrom<'_>) -> bool {
        let client = Client {
            client_id: hb.client_id.clone(),
            conn_id: from.conn.id(),
            handle: Rc::downgrade(from.conn),
            peer: Some(from.conn.peer()),
            language: from.language,
            version: from.version,
        };
        let outcome = self.groups.write(|t| t.heartbeat(hb, &client, now_ms()));
        self.send_notices(outcome.notices);
        outcome.sub_change
    }

    /// UNREGISTER_CLIENT: removes the client from the producer group and the consumer
    /// group named, telling the consumer group's other members.
    pub fn unregister_client(&self, producer_group: Option<&str>, consumer_group: Option<&str>, client_id: &str) {
        let notice = self.groups.write(|table| {
            if let Some(group) = producer_group {
                table.unregister_producer(group, client_id);
            }
            consumer_group.and_then(|group| table.unregister_consumer(group, client_id))
        });
        self.send_notices(notice.into_iter().collect());
    }

    /// Forgets the clients of a closed connection and tells their groups.
    pub fn connection_closed(&self, conn: &Connection) {
        let notices = self.groups.write(|t| t.connection_closed(conn.id()));
        if !notices.is_empty() {
            debug!(peer = %conn.peer(), groups = notices.len(), "connection closed; consumer groups changed");
        }
        self.send_notices(notices);
    }

    /// Forgets clients silent for longer than the expiry (`client_expiry_ms`), at most
    /// `CLIENT_EXPIRY_SWEEP_MAX` per call, and tells their groups; returns how many went.
    pub fn expire_clients(&self, now_ms: i64) -> usize {
        let expiry_ms = self.config.client_expiry_ms;
        let (notices, removed) = self.groups.write(|t| t.expire(now_ms, expiry_ms, CLIENT_EXPIRY_SWEEP_MAX));
        if removed > 0 {
            info!(removed, expiry_ms, "clients expired");
        }
        self.send_notices(notices);
        removed
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED to every open connection a notice names.
    fn send_notices(&self, notices: Vec<Notice<Weak<Connection>>>) {
        for notice in notices {
            let ext = ConsumerGroupRequestHeader { consumer_group: notice.group }.to_ext_fields();
            for target in &notice.targets {
                let Some(conn) = target.upgrade() else { continue };
                if conn.is_closed() {
                    continue;
                }
                let opaque = self.next_opaque.get();
                self.next_opaque.set(opaque.wrapping_add(1));
                let cmd =
                    RemotingCommand::new_request(request::NOTIFY_CONSUMER_IDS_CHANGED, ext.clone()).with_opaque(opaque);
                conn.send_oneway(cmd);
            }
        }
    }

    /// The subscription `group` registered for `topic` by heartbeat, if any.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.groups.read(|t| t.subscription(group, topic))
    }

    /// The clientIds of a consumer group, sorted; empty when the group is unknown.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.groups.read(|t| t.consumer_ids(group))
    }

    /// A snapshot of one consumer group (for admin: connections, subscriptions).
    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupView> {
        self.groups.read(|t| t.consumer_group(group))
    }

    pub fn consumer_group_names(&self) -> Vec<String> {
        self.groups.read(|t| t.consumer_group_names())
    }

    pub fn producer_group_names(&self) -> Vec<String> {
        self.groups.read(|t| t.producer_group_names())
    }

    pub fn producer_members(&self, group: &str) -> Vec<MemberView> {
        self.groups.read(|t| t.producer_members(group))
    }

    /// Open connections of a producer group's members, most recently heard first: where
    /// CHECK_TRANSACTION_STATE goes.
    pub fn producer_connections(&self, group: &str) -> Vec<Rc<Connection>> {
        let handles = self.groups.read(|t| t.producer_handles(group));
        handles.iter().filter_map(Weak::upgrade).filter(|c| !c.is_closed()).collect()
    }

    /// Open connections of a consumer group's members: where RESET_CONSUMER_CLIENT_OFFSET
    /// goes after an admin moved the group's offsets.
    pub fn consumer_connections(&self, group: &str) -> Vec<Rc<Connection>> {
        let handles = self.groups.read(|t| t.consumer_handles(group));
        handles.iter().filter_map(Weak::upgrade).filter(|c| !c.is_closed()).collect()
    }

    /// LOCK_BATCH_MQ: locks what it can of `queues` for `client_id`; returns every queue
    /// of the request the client now holds.
    pub fn lock_queues(&self, group: &str, client_id: &str, queues: &[MessageQueue]) -> Vec<MessageQueue> {
        self.locks.write(|t| t.try_lock(group, client_id, queues, now_ms()))
    }

    /// UNLOCK_BATCH_MQ: releases those of `queues` that `client_id` holds.
    pub fn unlock_queues(&self, group: &str, client_id: &str, queues: &[MessageQueue]) -> usize {
        self.locks.write(|t| t.unlock(group, client_id, queues))
    }

    /// Whether `client_id` holds a live lock on `mq` for `group`.
    pub fn is_locked(&self, group: &str, mq: &MessageQueue, client_id: &str) -> bool {
        self.locks.read(|t| t.is_locked(group, mq, client_id, now_ms()))
    }

    /// Whether any member of `group` holds a live lock here (the group consumes orderly).
    pub fn group_holds_locks(&self, group: &str) -> bool {
        self.locks.read(|t| t.group_holds_locks(group, now_ms()))
    }

    /// Forgets lapsed locks (client housekeeping); returns how many.
    pub fn sweep_locks(&self, now_ms: i64) -> usize {
        self.locks.write(|t| t.sweep_expired(now_ms))
    }
}
