//! The dispatcher: request code → handler, stated once per code in [`COMMAND_TABLE`],
//! with whether the request needs the Raft leader and whether what it changes is
//! replicated (Apache Iggy's `COMMAND_TABLE` is the model).
//!
//! Every request of a shard's connections comes through [`dispatch`], which is where
//! the rules that hold for all of them live, once:
//! - a code the table does not hold is answered REQUEST_CODE_NOT_SUPPORTED (Java's
//!   remark) and the connection stays up;
//! - a leader-only request to a follower of a replicated group is refused with "not the
//!   leader" (SERVICE_NOT_AVAILABLE: clients retry on the master) before its handler
//!   runs — the same answer its proposal would have failed with;
//! - every refusal (`remoting::rejections::is_rejection`) is logged at WARN,
//!   rate-limited, oneway requests' included;
//! - oneway requests are never answered (REMOTING.md §7 quirk 9): handlers return their
//!   refusals anyway so the log above shows them, and the answer is dropped here.
//!
//! Invariants: the table has one entry per code; the hot codes (sends, pulls) come
//! first, since a lookup walks the table. A handler is named by a [`Handler`] value, so
//! the table stays a plain static slice and calling a handler costs no allocation.
//!
//! Runs on the shard's executor, one task per request (the remoting server's). Sits
//! above `handlers` and `ops`; nothing below imports it.

use std::rc::Rc;

use rockshard_net::code::request::*;
use rockshard_net::rockshard::{RAFT_MESSAGES, RAFT_STATUS};
use rockshard_net::RemotingCommand;
use tracing::debug;

use super::handlers::answer::failure;
use super::handlers::{groups, locks, messages, offsets, pull, replication, runtime, send, sendback, topics};
use super::ops::Shard;
use crate::remoting::rejections::RequestSummary;
use crate::remoting::server::{Connection, Service};

/// Whether, in a replicated group, what a request changes reaches the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicated {
    /// It changes nothing the other nodes keep: a read, or state every node keeps for
    /// itself (client connections, queue locks).
    No,
    /// What it changes is proposed to the Raft log (records, or metadata records for
    /// topics) and applied by every node when committed.
    Log,
    /// What it changes (consumer offsets) reaches the followers in the leader's next
    /// snapshot (`tasks::replication`); a follower's own change is replaced by it.
    Snapshot,
}

/// The handler of a request code: one value per handler function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Send,
    Pull,
    HeartBeat,
    UnregisterClient,
    CheckClientConfig,
    ConsumerList,
    ConsumerConnections,
    QueryConsumerOffset,
    UpdateConsumerOffset,
    MaxOffset,
    MinOffset,
    SearchOffset,
    EarliestStoreTime,
    ConsumeStats,
    ResetOffset,
    LockBatch,
    UnlockBatch,
    SendBack,
    EndTransaction,
    CreateTopic,
    DeleteTopic,
    AllTopicConfig,
    TopicStats,
    ViewMessage,
    QueryMessage,
    RuntimeInfo,
    DelayOffsets,
    RaftMessages,
    RaftStatus,
}

/// One request code as the broker serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub code: i32,
    /// Java's `RequestCode` name (Rockshard's own for its codes).
    pub name: &'static str,
    pub handler: Handler,
    /// In a replicated group only the Raft leader serves it; a follower refuses it.
    pub leader_only: bool,
    pub replicated: Replicated,
}

const fn command(
    code: i32,
    name: &'static str,
    handler: Handler,
    leader_only: bool,
    replicated: Replicated,
) -> Command {
    Command { code, name, handler, leader_only, replicated }
}

use Handler as H;
use Replicated::{Log, No, Snapshot};

/// Every request code a shard serves. Sends and pulls first: they are nearly all of the
/// traffic, and a lookup walks the table.
pub static COMMAND_TABLE: &[Command] = &[
    command(SEND_MESSAGE_V2, "SEND_MESSAGE_V2", H::Send, true, Log),
    command(SEND_MESSAGE, "SEND_MESSAGE", H::Send, true, Log),
    command(SEND_BATCH_MESSAGE, "SEND_BATCH_MESSAGE", H::Send, true, Log),
    command(PULL_MESSAGE, "PULL_MESSAGE", H::Pull, false, Snapshot),
    command(LITE_PULL_MESSAGE, "LITE_PULL_MESSAGE", H::Pull, false, Snapshot),
    command(UPDATE_CONSUMER_OFFSET, "UPDATE_CONSUMER_OFFSET", H::UpdateConsumerOffset, false, Snapshot),
    command(QUERY_CONSUMER_OFFSET, "QUERY_CONSUMER_OFFSET", H::QueryConsumerOffset, false, No),
    // A heartbeat's membership stays on this node; the retry topics it creates are
    // proposed to the log.
    command(HEART_BEAT, "HEART_BEAT", H::HeartBeat, false, Log),
    command(UNREGISTER_CLIENT, "UNREGISTER_CLIENT", H::UnregisterClient, false, No),
    command(CHECK_CLIENT_CONFIG, "CHECK_CLIENT_CONFIG", H::CheckClientConfig, false, No),
    command(GET_CONSUMER_LIST_BY_GROUP, "GET_CONSUMER_LIST_BY_GROUP", H::ConsumerList, false, No),
    command(GET_MAX_OFFSET, "GET_MAX_OFFSET", H::MaxOffset, false, No),
    command(GET_MIN_OFFSET, "GET_MIN_OFFSET", H::MinOffset, false, No),
    command(SEARCH_OFFSET_BY_TIMESTAMP, "SEARCH_OFFSET_BY_TIMESTAMP", H::SearchOffset, false, No),
    command(GET_EARLIEST_MSG_STORETIME, "GET_EARLIEST_MSG_STORETIME", H::EarliestStoreTime, false, No),
    command(LOCK_BATCH_MQ, "LOCK_BATCH_MQ", H::LockBatch, false, No),
    command(UNLOCK_BATCH_MQ, "UNLOCK_BATCH_MQ", H::UnlockBatch, false, No),
    command(CONSUMER_SEND_MSG_BACK, "CONSUMER_SEND_MSG_BACK", H::SendBack, true, Log),
    command(END_TRANSACTION, "END_TRANSACTION", H::EndTransaction, true, Log),
    // Topic changes are taken on followers too: their proposals are forwarded to the
    // leader.
    command(UPDATE_AND_CREATE_TOPIC, "UPDATE_AND_CREATE_TOPIC", H::CreateTopic, false, Log),
    command(DELETE_TOPIC_IN_BROKER, "DELETE_TOPIC_IN_BROKER", H::DeleteTopic, false, Log),
    command(GET_ALL_TOPIC_CONFIG, "GET_ALL_TOPIC_CONFIG", H::AllTopicConfig, false, No),
    command(GET_TOPIC_STATS_INFO, "GET_TOPIC_STATS_INFO", H::TopicStats, false, No),
    command(GET_CONSUME_STATS, "GET_CONSUME_STATS", H::ConsumeStats, false, No),
    command(INVOKE_BROKER_TO_RESET_OFFSET, "INVOKE_BROKER_TO_RESET_OFFSET", H::ResetOffset, false, Snapshot),
    command(GET_CONSUMER_CONNECTION_LIST, "GET_CONSUMER_CONNECTION_LIST", H::ConsumerConnections, false, No),
    command(VIEW_MESSAGE_BY_ID, "VIEW_MESSAGE_BY_ID", H::ViewMessage, false, No),
    command(QUERY_MESSAGE, "QUERY_MESSAGE", H::QueryMessage, false, No),
    command(GET_BROKER_RUNTIME_INFO, "GET_BROKER_RUNTIME_INFO", H::RuntimeInfo, false, No),
    command(GET_ALL_DELAY_OFFSET, "GET_ALL_DELAY_OFFSET", H::DelayOffsets, false, No),
    command(RAFT_MESSAGES, "RAFT_MESSAGES", H::RaftMessages, false, No),
    command(RAFT_STATUS, "RAFT_STATUS", H::RaftStatus, false, No),
];

/// The table's entry for `code`, if the broker serves it.
pub fn lookup(code: i32) -> Option<&'static Command> {
    COMMAND_TABLE.iter().find(|c| c.code == code)
}

impl Handler {
    /// Runs the handler on one request.
    async fn run(self, shard: &Rc<Shard>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
        let req = &req;
        match self {
            H::Send => send::handle(shard, conn, req).await,
            H::Pull => pull::handle(shard, conn, req).await,
            H::HeartBeat => groups::heart_beat(shard, conn, req).await,
            H::UnregisterClient => groups::unregister_client(shard, req),
            H::CheckClientConfig => groups::check_client_config(req),
            H::ConsumerList => groups::consumer_list(shard, req),
            H::ConsumerConnections => groups::consumer_connections(shard, req),
            H::QueryConsumerOffset => offsets::query_consumer_offset(shard, req).await,
            H::UpdateConsumerOffset => offsets::update_consumer_offset(shard, req),
            H::MaxOffset => offsets::max_offset(shard, req),
            H::MinOffset => offsets::min_offset(shard, req),
            H::SearchOffset => offsets::search_offset(shard, req).await,
            H::EarliestStoreTime => offsets::earliest_store_time(shard, req).await,
            H::ConsumeStats => offsets::consume_stats(shard, req).await,
            H::ResetOffset => offsets::reset_offset(shard, req).await,
            H::LockBatch => locks::lock_batch(shard, req),
            H::UnlockBatch => locks::unlock_batch(shard, req),
            H::SendBack => sendback::consumer_send_back(shard, req).await,
            H::EndTransaction => sendback::end_transaction_request(shard, req).await,
            H::CreateTopic => topics::create_topic(shard, req).await,
            H::DeleteTopic => topics::delete_topic(shard, req).await,
            H::AllTopicConfig => topics::all_topic_config(shard, req),
            H::TopicStats => topics::topic_stats(shard, req).await,
            H::ViewMessage => messages::view_message(shard, req).await,
            H::QueryMessage => messages::query_message(req),
            H::RuntimeInfo => runtime::runtime_info(shard, req),
            H::DelayOffsets => runtime::delay_offsets(shard, req),
            H::RaftMessages => replication::raft_messages(shard, req),
            H::RaftStatus => replication::raft_status(shard, req),
        }
    }
}

/// Serves one request of a shard's connection: looks its code up, applies the leader
/// rule, runs its handler, logs a refusal, and drops the answer to a oneway request.
pub async fn dispatch(shard: Rc<Shard>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let summary = RequestSummary::of(&req);
    let answer = match lookup(req.code) {
        None => {
            debug!(shard = shard.id(), peer = %conn.peer(), code = req.code, "request code not supported");
            Some(RemotingCommand::not_supported(&req))
        }
        Some(cmd) => match cmd.leader_only.then(|| shard.not_leader()).flatten() {
            Some(not_leader) => failure(&req, &not_leader.into()),
            None => cmd.handler.run(&shard, conn, req).await,
        },
    };
    if let Some(answer) = &answer {
        shard.note_answer(summary, answer, conn.peer());
    }
    // Oneway requests are never answered (REMOTING.md §7 quirk 9). Handlers still
    // return their refusals so the log above shows them: their senders never will.
    answer.filter(|_| !summary.oneway)
}

impl Service for Shard {
    async fn handle(self: Rc<Self>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
        dispatch(self, conn, req).await
    }

    fn on_close(&self, conn: &Connection) {
        self.connection_closed(conn);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// What the broker answered before the table replaced `Shard::handle`'s `match`:
    /// every code and the handler it went to (and leader-only: the codes whose writes
    /// are proposals only a leader may make).
    const ANSWERED_BEFORE: [(i32, Handler, bool); 32] = [
        (SEND_MESSAGE, H::Send, true),
        (SEND_MESSAGE_V2, H::Send, true),
        (SEND_BATCH_MESSAGE, H::Send, true),
        (PULL_MESSAGE, H::Pull, false),
        (LITE_PULL_MESSAGE, H::Pull, false),
        (HEART_BEAT, H::HeartBeat, false),
        (UNREGISTER_CLIENT, H::UnregisterClient, false),
        (CHECK_CLIENT_CONFIG, H::CheckClientConfig, false),
        (GET_CONSUMER_LIST_BY_GROUP, H::ConsumerList, false),
        (QUERY_CONSUMER_OFFSET, H::QueryConsumerOffset, false),
        (UPDATE_CONSUMER_OFFSET, H::UpdateConsumerOffset, false),
        (GET_MAX_OFFSET, H::MaxOffset, false),
        (GET_MIN_OFFSET, H::MinOffset, false),
        (SEARCH_OFFSET_BY_TIMESTAMP, H::SearchOffset, false),
        (GET_EARLIEST_MSG_STORETIME, H::EarliestStoreTime, false),
        (LOCK_BATCH_MQ, H::LockBatch, false),
        (UNLOCK_BATCH_MQ, H::UnlockBatch, false),
        (CONSUMER_SEND_MSG_BACK, H::SendBack, true),
        (END_TRANSACTION, H::EndTransaction, true),
        (UPDATE_AND_CREATE_TOPIC, H::CreateTopic, false),
        (RAFT_MESSAGES, H::RaftMessages, false),
        (RAFT_STATUS, H::RaftStatus, false),
        (GET_ALL_TOPIC_CONFIG, H::AllTopicConfig, false),
        (DELETE_TOPIC_IN_BROKER, H::DeleteTopic, false),
        (GET_BROKER_RUNTIME_INFO, H::RuntimeInfo, false),
        (VIEW_MESSAGE_BY_ID, H::ViewMessage, false),
        (QUERY_MESSAGE, H::QueryMessage, false),
        (GET_TOPIC_STATS_INFO, H::TopicStats, false),
        (GET_CONSUME_STATS, H::ConsumeStats, false),
        (INVOKE_BROKER_TO_RESET_OFFSET, H::ResetOffset, false),
        (GET_CONSUMER_CONNECTION_LIST, H::ConsumerConnections, false),
        (GET_ALL_DELAY_OFFSET, H::DelayOffsets, false),
    ];

    #[test]
    fn the_table_has_one_entry_per_code() {
        let mut codes = HashSet::new();
        let mut names = HashSet::new();
        for c in COMMAND_TABLE {
            assert!(codes.insert(c.code), "code {} ({}) twice in COMMAND_TABLE", c.code, c.name);
            assert!(!c.name.is_empty() && names.insert(c.name), "name {:?} empty or twice", c.name);
            assert_eq!(lookup(c.code), Some(c));
        }
    }

    #[test]
    fn every_code_answered_before_is_answered_by_the_same_handler() {
        for (code, handler, leader_only) in ANSWERED_BEFORE {
            let c = lookup(code).unwrap_or_else(|| panic!("code {code} is no longer answered"));
            assert_eq!((c.handler, c.leader_only), (handler, leader_only), "{}", c.name);
        }
        assert_eq!(COMMAND_TABLE.len(), ANSWERED_BEFORE.len(), "a code was added: add it to ANSWERED_BEFORE's story");
        for code in [UPDATE_BROKER_CONFIG, GET_BROKER_CONFIG, POP_MESSAGE, QUERY_ASSIGNMENT, REGISTER_BROKER, 0, -1] {
            assert!(lookup(code).is_none(), "code {code} was never served");
        }
    }

    #[test]
    fn leader_only_requests_are_those_that_propose_records() {
        for c in COMMAND_TABLE {
            if c.leader_only {
                assert_eq!(c.replicated, Replicated::Log, "{}: a leader-only write goes through the log", c.name);
            }
        }
        let sends: Vec<&str> = COMMAND_TABLE.iter().filter(|c| c.handler == H::Send).map(|c| c.name).collect();
        assert_eq!(sends, ["SEND_MESSAGE_V2", "SEND_MESSAGE", "SEND_BATCH_MESSAGE"]);
        assert_eq!(COMMAND_TABLE[0].code, SEND_MESSAGE_V2, "the hottest code is looked up first");
    }
}
