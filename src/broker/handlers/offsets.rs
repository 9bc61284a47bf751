//! Consumer offsets and queue offsets, as requests: QUERY_CONSUMER_OFFSET (14),
//! UPDATE_CONSUMER_OFFSET (15, usually oneway), SEARCH_OFFSET_BY_TIMESTAMP (29),
//! GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32), and admin's
//! GET_CONSUME_STATS (208) and INVOKE_BROKER_TO_RESET_OFFSET (222).
//!
//! Offsets are committed by consumers (UPDATE_CONSUMER_OFFSET, and pulls carrying the
//! commit-offset bit, see `pull`), read back by consumers that take over a queue, shown
//! by admin per queue with the lag behind the queue's end, and moved by admin to a time.
//! After a reset the group's running clients are told (RESET_CONSUMER_CLIENT_OFFSET,
//! oneway, as Java's broker does), since they keep offsets in memory and would commit
//! the old ones over it.
//!
//! Runs on the shard's executor, one task per request. Deliberately not here: the table
//! and its file (`state::offsets`, `ops::offsets`), consume TPS (GET_CONSUME_STATS
//! reports 0.0), and the static-topic offset mapping Java has.

use rockshard_net::body::{ConsumeStats, OffsetWrapper, ResetOffsetBody};
use rockshard_net::code::{request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::headers::{
    BoundaryType, GetConsumeStatsRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, ResetOffsetRequestHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use rockshard_net::RemotingCommand;
use rockshard_storage::{Boundary, TopicConfig};

use super::answer::{
    bad_header, encode_failed, no_topic, reply, storage_failure, success, success_with_body, success_with_header,
};
use crate::broker::ops::Shard;
use crate::broker::state::topics::queue_ids;

/// QUERY_CONSUMER_OFFSET (14): what the group committed; for a group without an
/// offset, 0 when the queue is young (RocketMQ's rule, see `Shard::starts_young`), else
/// QUERY_NOT_FOUND so the client applies its consume-from-where.
pub async fn query_consumer_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: QueryConsumerOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Some(offset) = shard.committed_offset(&h.consumer_group, &h.topic, h.queue_id).filter(|o| *o >= 0) {
        return success_with_header(req, &QueryConsumerOffsetResponseHeader { offset });
    }
    if h.set_zero_if_not_found == Some(false) {
        return reply(req, response::QUERY_NOT_FOUND, "Not found, do not set to zero, maybe this group boot first");
    }
    match shard.starts_young(&h.topic, h.queue_id).await {
        Ok(true) => success_with_header(req, &QueryConsumerOffsetResponseHeader { offset: 0 }),
        // Java's remark, word for word; the client then applies its consume-from-where.
        Ok(false) => {
            reply(req, response::QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
        }
        Err(e) => storage_failure(req, e),
    }
}

/// UPDATE_CONSUMER_OFFSET (15), usually oneway: the dispatcher drops its answer after
/// logging a refusal.
pub fn update_consumer_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: UpdateConsumerOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if shard.topic(&h.topic).is_none() {
        return reply(req, response::TOPIC_NOT_EXIST, format!("Topic {} not exist!", h.topic));
    }
    if h.queue_id < 0 || h.commit_offset < 0 {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!("queueId {} and commitOffset {} must not be negative", h.queue_id, h.commit_offset),
        );
    }
    shard.commit_offset(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    success(req)
}

/// GET_MAX_OFFSET: the next offset to be written; 0 for a queue this shard does not
/// have, as RocketMQ answers.
pub fn max_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetMaxOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let offset = shard.queue_offsets(&h.topic, h.queue_id).map_or(0, |(_, max)| max.0 as i64);
    success_with_header(req, &GetMaxOffsetResponseHeader { offset })
}

/// GET_MIN_OFFSET: the smallest offset still readable; 0 for a missing queue.
pub fn min_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetMinOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let offset = shard.queue_offsets(&h.topic, h.queue_id).map_or(0, |(min, _)| min.0 as i64);
    success_with_header(req, &GetMinOffsetResponseHeader { offset })
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
pub async fn search_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: SearchOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let boundary = match h.boundary() {
        BoundaryType::Lower => Boundary::Lower,
        BoundaryType::Upper => Boundary::Upper,
    };
    match shard.offset_by_time(&h.topic, h.queue_id, h.timestamp_ms, boundary).await {
        Ok(offset) => success_with_header(req, &SearchOffsetResponseHeader { offset: offset.0 as i64 }),
        Err(e) => storage_failure(req, e),
    }
}

/// GET_EARLIEST_MSG_STORETIME: -1 when the queue has no readable message (Java's
/// "unknown").
pub async fn earliest_store_time(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetEarliestMsgStoretimeRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    match shard.earliest_store_time(&h.topic, h.queue_id).await {
        Ok(t) => success_with_header(req, &GetEarliestMsgStoretimeResponseHeader { timestamp_ms: t.unwrap_or(-1) }),
        Err(e) => storage_failure(req, e),
    }
}

/// GET_CONSUME_STATS (208).
pub async fn consume_stats(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let group = h.consumer_group.as_str();
    let topics: Vec<TopicConfig> = match h.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(name) => match shard.topic(name) {
            Some(t) => vec![t],
            None => return no_topic(req, name, shard.broker_name()),
        },
        // Every topic where the group committed an offset (and which still exists).
        None => shard.topics_of_group(group).iter().filter_map(|name| shard.topic(name)).collect(),
    };
    let mut stats = ConsumeStats::default();
    for t in &topics {
        for qid in queue_ids(t) {
            let broker_offset = shard.queue_offsets(&t.name, qid).map_or(0, |(_, max)| max.0 as i64);
            // Java reports a queue the group never committed as consumer offset 0.
            let consumer_offset = shard.committed_offset(group, &t.name, qid).unwrap_or(0).max(0);
            let last_timestamp = match consumer_offset {
                0 => 0,
                c => shard.store_time_at(&t.name, qid, c as u64 - 1).await.unwrap_or(0),
            };
            stats.offset_table.insert(
                shard.message_queue(&t.name, qid),
                OffsetWrapper { broker_offset, consumer_offset, last_timestamp, pull_offset: consumer_offset },
            );
        }
    }
    match stats.encode() {
        Ok(json) => success_with_body(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): for each queue of the topic here (or the one
/// named), the offset of the first message stored at or after the time (the end of the
/// queue when none is, or when the time is -1) becomes the group's committed offset.
/// Without `isForce` an offset only moves backwards. The answer lists the new offsets.
pub async fn reset_offset(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ResetOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(t) = shard.topic(&h.topic) else { return no_topic(req, &h.topic, shard.broker_name()) };
    let one_queue = h.queue_id.filter(|q| *q >= 0);
    let queues: Vec<i32> = match one_queue {
        Some(q) if !queue_ids(&t).contains(&q) => {
            return reply(
                req,
                response::INVALID_PARAMETER,
                format!(
                    "queue {q} of topic `{}` is not on {} (it has queues 0 to {})",
                    t.name,
                    shard.broker_name(),
                    queue_ids(&t).end - 1
                ),
            );
        }
        Some(q) => vec![q],
        None => queue_ids(&t).collect(),
    };
    let mut body = ResetOffsetBody::default();
    for qid in queues {
        let (min, max) = shard.queue_offsets(&t.name, qid).map_or((0, 0), |(min, max)| (min.0, max.0));
        let target = match (one_queue, h.offset) {
            (Some(_), Some(offset)) => offset.clamp(min as i64, max as i64),
            _ if h.timestamp_ms < 0 => max as i64,
            _ => match shard.offset_by_time(&t.name, qid, h.timestamp_ms, Boundary::Lower).await {
                Ok(o) => o.0 as i64,
                Err(e) => {
                    return reply(
                        req,
                        response::SYSTEM_ERROR,
                        format!("searching queue {qid} of `{}` for time {}: {e}", t.name, h.timestamp_ms),
                    )
                }
            },
        };
        let current = shard.committed_offset(&h.group, &t.name, qid);
        let new = match current {
            Some(c) if !h.is_force && target >= c => c,
            _ => {
                shard.reset_offset(&h.group, &t.name, qid, target);
                target
            }
        };
        body.offset_table.insert(shard.message_queue(&t.name, qid), new);
    }
    let json = match body.encode() {
        Ok(json) => json,
        Err(e) => return encode_failed(req, e),
    };
    // Running consumers keep their offsets in memory and would commit the old ones over
    // the reset; RocketMQ tells them, and so do we (oneway, as Java's broker does).
    let mut ext = ExtFields::new();
    ext.insert("topic", h.topic.clone());
    ext.insert("group", h.group.clone());
    ext.insert("timestamp", h.timestamp_ms.to_string());
    ext.insert("isForce", h.is_force.to_string());
    let notice = RemotingCommand::new_request(request::RESET_CONSUMER_CLIENT_OFFSET, ext).with_body(json.clone());
    for conn in shard.consumer_connections(&h.group) {
        conn.send_oneway(notice.clone());
    }
    success_with_body(req, json)
}
