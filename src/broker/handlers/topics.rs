//! Topics, as requests: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21) and GET_TOPIC_STATS_INFO (202).
//!
//! A topic's queue counts in a request are totals for the whole broker; a change made
//! here is applied on every shard of the process before it is answered (or answered
//! with an error naming the shards without it; sending it again finishes it). The flush
//! mode travels as the RocketMQ 5 attribute `+flush.mode=sync|async`. The topics the
//! broker keeps for itself can be neither redefined nor deleted. Deleting a topic that
//! is not there succeeds, as in Java, so a retried delete does not fail.
//!
//! Runs on the shard's executor, one task per request. Deliberately not here: the naming
//! and system-topic rules (`state::topics`), applying changes on every shard and in the
//! Raft group (`ops::topics`), and topics created on first send (`send`).

use rockshard_net::body::{self, DataVersion, TopicConfigSerializeWrapper, TopicOffset, TopicStatsTable};
use rockshard_net::code::response;
use rockshard_net::headers::{CreateTopicRequestHeader, TopicRequestHeader};
use rockshard_net::RemotingCommand;
use rockshard_storage::topics::perm;

use super::answer::{bad_header, encode_failed, no_topic, reply, success, success_with_body};
use crate::broker::ops::control::TopicSpec;
use crate::broker::ops::Shard;
use crate::broker::state::topics::{
    check_topic_name, flush_mode_attribute, is_system_topic, queue_ids, wire_topic_config, FLUSH_MODE_ATTRIBUTE,
};
use crate::limits::TOPIC_QUEUES_MAX;

/// UPDATE_AND_CREATE_TOPIC (17).
pub async fn create_topic(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: CreateTopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Err(e) = check_topic_name(&h.topic) {
        return reply(req, response::INVALID_PARAMETER, e);
    }
    if is_system_topic(shard.config(), &h.topic) {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!("the topic[{}] is conflict with system topic: the broker keeps it itself", h.topic),
        );
    }
    let max = TOPIC_QUEUES_MAX as i32;
    if !(0..=max).contains(&h.read_queue_nums) || !(1..=max).contains(&h.write_queue_nums) {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!(
                "queue counts read {} / write {}: write must be 1 to {max}, read 0 to {max}",
                h.read_queue_nums, h.write_queue_nums
            ),
        );
    }
    let flush = match h.attributes.as_deref().map(flush_mode_attribute).transpose() {
        Ok(f) => f.flatten(),
        Err(e) => return reply(req, response::INVALID_PARAMETER, format!("attribute {FLUSH_MODE_ATTRIBUTE}: {e}")),
    };
    let spec = TopicSpec {
        name: h.topic.clone(),
        read_queues: h.read_queue_nums as u32,
        write_queues: h.write_queue_nums as u32,
        perm: (h.perm as u32) & (perm::READ_WRITE | perm::INHERIT),
        flush,
        order: h.order,
    };
    match shard.apply_everywhere(spec).await {
        Ok(()) => success(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, format!("creating topic `{}`: {e}", h.topic)),
    }
}

/// GET_ALL_TOPIC_CONFIG (21): this shard's topics with this shard's queue counts.
pub fn all_topic_config(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let table = shard.topics().iter().map(|t| (t.name.clone(), wire_topic_config(t))).collect();
    let version = shard.topic_version() as i64;
    let wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion { counter: version, state_version: 0, timestamp: version },
        topic_config_table: table,
        ..Default::default()
    };
    match body::to_json(&wrapper) {
        Ok(json) => success_with_body(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// DELETE_TOPIC_IN_BROKER (215): removes the topic from every shard. Like Java, deleting
/// a topic that is not there succeeds; refusing would make a retried delete fail.
pub async fn delete_topic(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Err(e) = check_topic_name(&h.topic) {
        return reply(req, response::INVALID_PARAMETER, e);
    }
    if is_system_topic(shard.config(), &h.topic) {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!("topic `{}` is a system topic the broker needs; it cannot be deleted", h.topic),
        );
    }
    match shard.delete_topic_everywhere(&h.topic).await {
        Ok(_) => success(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, format!("deleting topic `{}`: {e}", h.topic)),
    }
}

/// GET_TOPIC_STATS_INFO (202).
pub async fn topic_stats(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(t) = shard.topic(&h.topic) else { return no_topic(req, &h.topic, shard.broker_name()) };
    let mut table = TopicStatsTable::default();
    for qid in queue_ids(&t) {
        let (min, max) = shard.queue_offsets(&t.name, qid).map_or((0, 0), |(min, max)| (min.0, max.0));
        let last = match max {
            0 => 0,
            _ => shard.store_time_at(&t.name, qid, max - 1).await.unwrap_or(0),
        };
        table.offset_table.insert(
            shard.message_queue(&t.name, qid),
            TopicOffset { last_update_timestamp: last, max_offset: max as i64, min_offset: min as i64 },
        );
    }
    match table.encode() {
        Ok(json) => success_with_body(req, json),
        Err(e) => encode_failed(req, e),
    }
}
