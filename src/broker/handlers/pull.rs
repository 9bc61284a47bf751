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
//! message of another tag (`state::filter`). Push consumers do not repeat their
//! subscription in pulls: it comes from their heartbeat (the group table), and a pull
//! without one is answered SUBSCRIPTION_NOT_EXIST (24), as RocketMQ does. A pull that
//! carries the commit-offset bit commits that offset (on a leader only).
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
//! Runs on the shard's executor, one task per request; served by followers too (they
//! may suggest the leader, and the leader a follower, through suggestWhichBrokerId).
//! Invariant: a waiter registers before it re-checks the queue, so a message that
//! arrives between the read and the wait is never missed (`ops::pulls`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use rockshard_net::code::{pull_sys_flag, response};
use rockshard_net::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
use rockshard_net::RemotingCommand;
use rockshard_storage::topics::perm;
use rockshard_storage::{GetResult, GetStatus, QueueOffset};

use super::answer::{bad_header, reply, storage_failure};
use crate::broker::ops::Shard;
use crate::broker::state::filter::TagFilter;
use crate::limits::{PULL_BYTES_MAX, PULL_MESSAGES_MAX};
use crate::remoting::server::Connection;

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

/// A refusal: (response code, remark).
type Refusal = (i32, String);

/// PULL_MESSAGE and LITE_PULL_MESSAGE.
pub async fn handle(shard: &Rc<Shard>, conn: &Rc<Connection>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: PullMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Err((code, remark)) = check_queue(shard, &h) {
        return reply(req, code, remark);
    }
    let filter = match filter_of(shard, &h) {
        Ok(f) => f,
        Err((code, remark)) => return reply(req, code, remark),
    };
    if h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && h.commit_offset >= 0 {
        shard.commit_pulled_offset(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }
    if h.queue_offset < 0 {
        return reply(req, response::INVALID_PARAMETER, format!("queue offset {} is negative", h.queue_offset));
    }
    read(shard, conn, req, &h, &filter).await
}

/// The queue a pull names must exist here and be readable.
fn check_queue(shard: &Shard, h: &PullMessageRequestHeader) -> Result<(), Refusal> {
    let Some(topic) = shard.topic(&h.topic) else {
        return Err((
            response::TOPIC_NOT_EXIST,
            format!("topic `{}` does not exist on {}", h.topic, shard.broker_name()),
        ));
    };
    if topic.perm & perm::READ == 0 {
        return Err((
            response::NO_PERMISSION,
            format!("topic `{}` is not readable on {}", h.topic, shard.broker_name()),
        ));
    }
    if h.queue_id < 0 || h.queue_id >= topic.read_queues as i32 {
        return Err((
            response::SYSTEM_ERROR,
            format!(
                "queue {} of topic `{}` does not exist on {} ({} read queues)",
                h.queue_id,
                h.topic,
                shard.broker_name(),
                topic.read_queues
            ),
        ));
    }
    Ok(())
}

/// The pull's tag filter: its own subscription when it carries one, else the one its
/// group registered by heartbeat.
fn filter_of(shard: &Shard, h: &PullMessageRequestHeader) -> Result<TagFilter, Refusal> {
    if h.sys_flag & pull_sys_flag::SUBSCRIPTION != 0 {
        if h.expression_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("TAG")) {
            return Err((
                response::SUBSCRIPTION_PARSE_FAILED,
                "only TAG subscriptions are supported (not SQL92)".to_string(),
            ));
        }
        return Ok(TagFilter::parse(h.subscription.as_deref().unwrap_or("*")));
    }
    match shard.subscription(&h.consumer_group, &h.topic) {
        Some(s) => Ok(TagFilter::from_subscription(&s)),
        None => Err((
            response::SUBSCRIPTION_NOT_EXIST,
            format!(
                "consumer group `{}` has no subscription to `{}` here; send a heartbeat first",
                h.consumer_group, h.topic
            ),
        )),
    }
}

/// Reads the queue, waiting (long polling) while there is nothing new and the pull may
/// be held; answers what it found. A found batch is written to the connection here, as
/// the answer's header followed by the stored records, and `None` returned.
async fn read(
    shard: &Rc<Shard>,
    conn: &Rc<Connection>,
    req: &RemotingCommand,
    h: &PullMessageRequestHeader,
    filter: &TagFilter,
) -> Option<RemotingCommand> {
    let max_msgs = (h.max_msg_nums.max(1) as u32).min(PULL_MESSAGES_MAX);
    let max_bytes = h.max_msg_bytes.filter(|b| *b > 0).map_or(PULL_BYTES_MAX, |b| (b as usize).min(PULL_BYTES_MAX));
    let suspend = h.sys_flag & pull_sys_flag::SUSPEND != 0;
    let hold_ms = (h.suspend_timeout_millis.max(0) as u64).min(shard.config().long_polling_max_ms);
    let deadline = Instant::now() + Duration::from_millis(hold_ms);
    let offset = QueueOffset(h.queue_offset as u64);
    let use_filter = *filter != TagFilter::All;
    let code_filter = |code: i64| filter.code_matches(code);

    loop {
        let read = shard
            .read_messages(
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
            Err(e) => return storage_failure(req, e),
        };
        match r.status {
            GetStatus::Found => {
                if use_filter {
                    r.messages.retain(|m| filter.record_matches(m));
                    if r.messages.is_empty() {
                        let next = r.next_begin_offset;
                        return Some(answer(req, response::PULL_RETRY_IMMEDIATELY, &r, next, None));
                    }
                }
                let next = r.next_begin_offset;
                let mut a = answer(req, response::SUCCESS, &r, next, None);
                if let Some(id) = r.messages.first().and_then(|first| shard.suggest_broker(first)) {
                    a.ext_fields.insert("suggestWhichBrokerId", id.to_string());
                }
                conn.send_parts(&a, &r.messages);
                return None;
            }
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
                let next = r.next_begin_offset;
                return Some(answer(req, response::PULL_RETRY_IMMEDIATELY, &r, next, None));
            }
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                let next = r.next_begin_offset;
                let remark = format!("offset {} is outside [{}, {}]", offset, r.min_offset, r.max_offset);
                return Some(answer(req, response::PULL_OFFSET_MOVED, &r, next, Some(remark)));
            }
            GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue | GetStatus::OffsetOverflowOne => {
                if !suspend || hold_ms == 0 || Instant::now() >= deadline || shard.shutdown().is_set() {
                    let next = if r.status == GetStatus::OffsetOverflowOne { offset } else { r.next_begin_offset };
                    return Some(answer(req, response::PULL_NOT_FOUND, &r, next, None));
                }
                shard.wait_for_arrival(&h.topic, h.queue_id, offset, deadline).await;
                if shard.shutdown().is_set() {
                    let next = offset;
                    return Some(answer(req, response::PULL_NOT_FOUND, &r, next, None));
                }
            }
        }
    }
}
