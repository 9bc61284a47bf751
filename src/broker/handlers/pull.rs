//! Pulls: PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), with long polling.
//!
//! A pull reads up to `maxMsgNums` records of one queue from its offset. When there is
//! nothing new and the client allows suspending, the pull waits (at most its
//! `suspendTimeoutMillis`, capped by `long_polling_max_ms`) and a new message in that
//! queue wakes it at once: the store's arrival listener wakes every waiter of the queue.
//!
//! Filtering: by tag. The ConsumeQueue keeps each record's tag hash, so the store skips
//! records whose hash is not subscribed without reading them; the records it returns are
//! then checked against the exact tag names, so a hash collision never delivers a
//! message of another tag. Push consumers do not repeat their subscription in pulls: it
//! comes from their heartbeat (`groups`), and a pull without one is answered
//! SUBSCRIPTION_NOT_EXIST (24), as RocketMQ does.
//!
//! Status codes follow RocketMQ's PullMessageProcessor: found → SUCCESS; nothing new →
//! PULL_NOT_FOUND; offset below the min or past the end → PULL_OFFSET_MOVED with the
//! offset to go on from; only filtered-out records → PULL_RETRY_IMMEDIATELY with the
//! offset past them. Every answer carries nextBeginOffset, minOffset, maxOffset and
//! suggestWhichBrokerId (§6.2).
//!
//! A found batch is written to the connection as the answer's header followed by the
//! stored records themselves (`Connection::send_parts`), one copy from the store's
//! buffers to the socket buffer.
//!
//! Runs on the shard's executor. Invariant: a waiter registers before it re-checks the
//! queue, so a message that arrives between the read and the wait is never missed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rockshard_net::body::SubscriptionData;
use rockshard_net::code::{pull_sys_flag, response};
use rockshard_net::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
use rockshard_net::properties::{self, java_string_hash, keys};
use rockshard_net::{stored, RemotingCommand};
use rockshard_storage::sync::Notify;
use rockshard_storage::topics::perm;
use rockshard_storage::{GetResult, GetStatus, QueueOffset};

use crate::broker::replication;
use crate::broker::shard::{bad_header, reply, storage_error_code, Shard};
use crate::limits::{PULL_BYTES_MAX, PULL_MESSAGES_MAX};
use crate::remoting::server::Connection;

/// Pulls waiting for new messages, by topic and queue.
#[derive(Default)]
pub struct PullWaiters {
    waiting: RefCell<HashMap<String, HashMap<i32, Vec<Rc<Notify>>>>>,
    count: Cell<usize>,
}

impl PullWaiters {
    fn register(&self, topic: &str, queue_id: i32) -> Rc<Notify> {
        let n = Rc::new(Notify::default());
        let mut w = self.waiting.borrow_mut();
        w.entry(topic.to_string()).or_default().entry(queue_id).or_default().push(n.clone());
        self.count.set(self.count.get() + 1);
        n
    }

    fn forget(&self, topic: &str, queue_id: i32, n: &Rc<Notify>) {
        let mut w = self.waiting.borrow_mut();
        if let Some(queues) = w.get_mut(topic) {
            if let Some(list) = queues.get_mut(&queue_id) {
                if let Some(at) = list.iter().position(|x| Rc::ptr_eq(x, n)) {
                    list.swap_remove(at);
                    self.count.set(self.count.get() - 1);
                }
                if list.is_empty() {
                    queues.remove(&queue_id);
                }
            }
            if queues.is_empty() {
                w.remove(topic);
            }
        }
    }

    /// Wakes every pull waiting on the queue (they re-read and answer).
    pub fn arrived(&self, topic: &str, queue_id: i32) {
        if self.count.get() == 0 {
            return;
        }
        let w = self.waiting.borrow();
        if let Some(list) = w.get(topic).and_then(|q| q.get(&queue_id)) {
            for n in list {
                n.notify();
            }
        }
    }

    /// Wakes every waiting pull; used at shutdown (they see the shutdown and answer).
    pub fn wake_all_for_shutdown(&self) {
        for queues in self.waiting.borrow().values() {
            for list in queues.values() {
                for n in list {
                    n.notify();
                }
            }
        }
    }

    /// Pulls waiting right now (for stats and tests).
    pub fn waiting(&self) -> usize {
        self.count.get()
    }
}

/// Connects the store's arrivals to the waiters.
pub fn start(shard: &Rc<Shard>) {
    let weak = Rc::downgrade(shard);
    shard.store.set_arrival_listener(move |topic, queue_id, _max| {
        if let Some(shard) = weak.upgrade() {
            shard.pulls.arrived(topic, queue_id);
        }
    });
    let shard = shard.clone();
    glommio::spawn_local(async move {
        shard.shutdown.wait().await;
        shard.pulls.wake_all_for_shutdown();
    })
    .detach();
}

/// A tag subscription, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    All,
    Tags { names: Vec<String>, codes: Vec<i64> },
}

impl TagFilter {
    /// From a TAG expression: `*` (or empty) or `TagA || TagB`.
    pub fn parse(expression: &str) -> TagFilter {
        let names: Vec<String> =
            expression.split("||").map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
        if names.is_empty() || names.iter().any(|t| t == "*") {
            return TagFilter::All;
        }
        let codes = names.iter().map(|t| java_string_hash(t) as i64).collect();
        TagFilter::Tags { names, codes }
    }

    pub fn from_subscription(s: &SubscriptionData) -> TagFilter {
        if s.tags_set.is_empty() {
            return TagFilter::parse(&s.sub_string);
        }
        TagFilter::parse(&s.tags_set.join("||"))
    }

    fn code_matches(&self, code: i64) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags { codes, .. } => codes.contains(&code),
        }
    }

    /// The exact check on a record's TAGS property.
    fn record_matches(&self, record: &[u8]) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags { names, .. } => match stored::decode(record) {
                Ok(Some(stored::Record::Message(m))) => {
                    properties::get(m.properties, keys::TAGS).is_some_and(|t| names.iter().any(|n| n == t))
                }
                _ => false,
            },
        }
    }
}

fn answer(
    req: &RemotingCommand,
    code: i32,
    r: &GetResult,
    next: QueueOffset,
    remark: Option<String>,
) -> RemotingCommand {
    let mut a = RemotingCommand::response_to(req, code, remark);
    a.set_ext_header(&PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: next.0 as i64,
        min_offset: r.min_offset.0 as i64,
        max_offset: r.max_offset.0 as i64,
        offset_delta: None,
        topic_sys_flag: None,
        group_sys_flag: None,
        forbidden_type: None,
    });
    a
}

/// Where a replicated group would rather serve this consumer's next pull (RocketMQ's
/// suggestWhichBrokerId, which clients follow): a consumer reading older than the hot
/// window from the leader is sent to the follower furthest along, so catching up does
/// not take the leader's disk and cores from live traffic; one back inside the hot window
/// on a follower is sent back to the leader. `None`: stay (the answer says 0, the master,
/// as a single node always does).
fn suggest_broker(shard: &Shard, r: &GetResult) -> Option<i64> {
    let replica = shard.replica.get()?;
    let first = r.messages.first()?;
    let at = stored::decode_header(first).ok().flatten()?.physical_offset;
    let end = shard.store.commitlog_positions().3 .0 as i64;
    let cold = end.saturating_sub(at) as u64 > shard.config.hot_window_bytes;
    match (replica.is_leader(), cold) {
        (true, true) => replication::furthest_follower(&replica.status()).map(|id| id as i64),
        (false, true) => Some(shard.broker_id()),
        (_, false) => None,
    }
}

/// PULL_MESSAGE and LITE_PULL_MESSAGE.
pub async fn handle(shard: &Rc<Shard>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PullMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(&req, e),
    };
    let Some(topic) = shard.store.topic(&h.topic) else {
        return reply(
            &req,
            response::TOPIC_NOT_EXIST,
            format!("topic `{}` does not exist on {}", h.topic, shard.broker_name),
        );
    };
    if topic.perm & perm::READ == 0 {
        return reply(
            &req,
            response::NO_PERMISSION,
            format!("topic `{}` is not readable on {}", h.topic, shard.broker_name),
        );
    }
    if h.queue_id < 0 || h.queue_id >= topic.read_queues as i32 {
        return reply(
            &req,
            response::SYSTEM_ERROR,
            format!(
                "queue {} of topic `{}` does not exist on {} ({} read queues)",
                h.queue_id, h.topic, shard.broker_name, topic.read_queues
            ),
        );
    }
    let filter = if h.sys_flag & pull_sys_flag::SUBSCRIPTION != 0 {
        if h.expression_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("TAG")) {
            return reply(
                &req,
                response::SUBSCRIPTION_PARSE_FAILED,
                "only TAG subscriptions are supported (not SQL92)",
            );
        }
        TagFilter::parse(h.subscription.as_deref().unwrap_or("*"))
    } else {
        match shard.groups.subscription(&h.consumer_group, &h.topic) {
            Some(s) => TagFilter::from_subscription(&s),
            None => {
                return reply(
                    &req,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "consumer group `{}` has no subscription to `{}` here; send a heartbeat first",
                        h.consumer_group, h.topic
                    ),
                )
            }
        }
    };
    // As RocketMQ: only the master takes offsets carried by pulls; a replicated follower
    // gets its leader's table instead.
    if h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && h.commit_offset >= 0 && shard.is_leader() {
        shard.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }
    if h.queue_offset < 0 {
        return reply(&req, response::INVALID_PARAMETER, format!("queue offset {} is negative", h.queue_offset));
    }
    let max_msgs = (h.max_msg_nums.max(1) as u32).min(PULL_MESSAGES_MAX);
    let max_bytes = h.max_msg_bytes.filter(|b| *b > 0).map_or(PULL_BYTES_MAX, |b| (b as usize).min(PULL_BYTES_MAX));
    let suspend = h.sys_flag & pull_sys_flag::SUSPEND != 0;
    let hold_ms = (h.suspend_timeout_millis.max(0) as u64).min(shard.config.long_polling_max_ms);
    let deadline = Instant::now() + Duration::from_millis(hold_ms);
    let offset = QueueOffset(h.queue_offset as u64);

    loop {
        let code_filter = |code: i64| filter.code_matches(code);
        let use_filter = filter != TagFilter::All;
        let read = shard
            .store
            .get_messages(
                &h.topic,
                h.queue_id,
                offset,
                max_msgs,
                max_bytes,
                use_filter.then_some(&code_filter as &dyn Fn(i64) -> bool),
            )
            .await;
        let mut r = match read {
            Ok(r) => r,
            Err(e) => return reply(&req, storage_error_code(&e), e.to_string()),
        };
        match r.status {
            GetStatus::Found => {
                if use_filter {
                    r.messages.retain(|m| filter.record_matches(m));
                    if r.messages.is_empty() {
                        let next = r.next_begin_offset;
                        return Some(answer(&req, response::PULL_RETRY_IMMEDIATELY, &r, next, None));
                    }
                }
                let next = r.next_begin_offset;
                let mut a = answer(&req, response::SUCCESS, &r, next, None);
                if let Some(id) = suggest_broker(shard, &r) {
                    a.ext_fields.insert("suggestWhichBrokerId", id.to_string());
                }
                conn.send_parts(&a, &r.messages);
                return None;
            }
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
                let next = r.next_begin_offset;
                return Some(answer(&req, response::PULL_RETRY_IMMEDIATELY, &r, next, None));
            }
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                let next = r.next_begin_offset;
                let remark = format!("offset {} is outside [{}, {}]", offset, r.min_offset, r.max_offset);
                return Some(answer(&req, response::PULL_OFFSET_MOVED, &r, next, Some(remark)));
            }
            GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue | GetStatus::OffsetOverflowOne => {
                if !suspend || hold_ms == 0 || Instant::now() >= deadline || shard.shutdown.is_set() {
                    let next = if r.status == GetStatus::OffsetOverflowOne { offset } else { r.next_begin_offset };
                    return Some(answer(&req, response::PULL_NOT_FOUND, &r, next, None));
                }
                // Register first, then look again: an arrival during the read above
                // would otherwise go unnoticed until the hold ends.
                let waiter = shard.pulls.register(&h.topic, h.queue_id);
                let arrived = shard.store.queue_offsets(&h.topic, h.queue_id).is_some_and(|(_, max)| max > offset);
                if !arrived {
                    let left = deadline.saturating_duration_since(Instant::now());
                    futures_lite::future::or(waiter.notified(), glommio::timer::sleep(left)).await;
                }
                shard.pulls.forget(&h.topic, h.queue_id, &waiter);
                if shard.shutdown.is_set() {
                    let next = offset;
                    return Some(answer(&req, response::PULL_NOT_FOUND, &r, next, None));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_compile_to_java_hashes() {
        assert_eq!(TagFilter::parse("*"), TagFilter::All);
        assert_eq!(TagFilter::parse(""), TagFilter::All);
        assert_eq!(TagFilter::parse("a || *"), TagFilter::All);
        let f = TagFilter::parse("TagA || TagB");
        assert!(f.code_matches(java_string_hash("TagA") as i64));
        assert!(f.code_matches(java_string_hash("TagB") as i64));
        assert!(!f.code_matches(java_string_hash("TagC") as i64));
    }

    #[test]
    fn the_exact_check_refuses_a_hash_collision() {
        // "Aa" and "BB" have the same Java hash: the ConsumeQueue cannot tell them apart.
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        let f = TagFilter::parse("Aa");
        assert!(f.code_matches(java_string_hash("BB") as i64));
        let props = properties::encode([(keys::TAGS, "BB")]);
        let fields = stored::RecordFields {
            topic: b"t",
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp_ms: 2,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"x",
            properties: &props,
        };
        let mut record = Vec::new();
        stored::encode(&fields, 0, 0, &mut record).unwrap();
        assert!(!f.record_matches(&record));
        assert!(TagFilter::parse("BB").record_matches(&record));
    }
}
