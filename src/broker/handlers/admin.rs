//! Broker-side admin and query requests: every request code no other module owns ends
//! up here (see `shard.rs`'s dispatch).
//!
//! Served, each against this shard only (a shard is a broker of its own in routes, so
//! admin tools ask every shard that appears in a route or in the cluster):
//! - GET_ALL_TOPIC_CONFIG (21): this shard's topic table, flush mode in `attributes`.
//! - DELETE_TOPIC_IN_BROKER (215): removes the topic from *every* shard of the process
//!   (one request is enough, as with topic creation).
//! - GET_BROKER_RUNTIME_INFO (28): a KVTable of versions, CommitLog positions, counters.
//! - VIEW_MESSAGE_BY_ID (33): the stored record at a CommitLog offset (an offset msgId
//!   names the shard's address and that offset).
//! - QUERY_MESSAGE (12): we keep no key index, so always QUERY_NOT_FOUND, with the two
//!   fields the Rust client requires.
//! - GET_TOPIC_STATS_INFO (202): min/max offset and last store time per queue.
//! - GET_CONSUME_STATS (208): per queue the max offset, the group's committed offset
//!   and the lag between them.
//! - INVOKE_BROKER_TO_RESET_OFFSET (222): moves a group's committed offsets to a time
//!   (or to an explicit offset for one queue).
//! - GET_CONSUMER_CONNECTION_LIST (203): a consumer group's members here and its
//!   subscriptions; CONSUMER_NOT_ONLINE when it has none.
//! - GET_ALL_DELAY_OFFSET (45): delayed-delivery progress per level, in
//!   `delayOffset.json`'s form.
//!
//! Everything else is answered REQUEST_CODE_NOT_SUPPORTED with Java's remark, and the
//! connection stays up.
//!
//! Runs on the shard's executor. No `RefCell` borrow is held across an `.await`: the
//! handlers only call the store's and the offset table's own methods.
//!
//! Deliberately not here: an index of message keys (QUERY_MESSAGE cannot find by key),
//! consume TPS (reported as 0.0), telling a group's running clients about a reset
//! (RESET_CONSUMER_CLIENT_OFFSET: they keep their in-memory offsets and may commit them
//! over the reset), and broker configuration changes over the wire
//! (UPDATE_BROKER_CONFIG is not supported: the configuration is a file and flags).

use std::collections::BTreeMap;
use std::rc::Rc;

use rockshard_net::body::{
    self, ClientConnection, ConsumeStats, ConsumerConnection, DataVersion, KVTable, MessageQueue, OffsetWrapper,
    ResetOffsetBody, TopicConfigSerializeWrapper, TopicOffset, TopicStatsTable,
};
use rockshard_net::code::{request, response, version};
use rockshard_net::command::ExtFields;
use rockshard_net::headers::{
    ConsumerGroupRequestHeader, GetConsumeStatsRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    ResetOffsetRequestHeader, TopicRequestHeader, ViewMessageRequestHeader,
};
use rockshard_net::{stored, RemotingCommand};
use rockshard_storage::{Boundary, PhysicalOffset, QueueOffset, TopicConfig};
use tracing::debug;

use crate::broker::shard::{bad_header, reply, Shard};
use crate::broker::topics::{self, FLUSH_MODE_ATTRIBUTE};
use crate::remoting::server::Connection;

/// Handles every request code no other module owns.
pub async fn handle(shard: &Rc<Shard>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    match req.code {
        request::GET_ALL_TOPIC_CONFIG => all_topic_config(shard, &req),
        request::DELETE_TOPIC_IN_BROKER => delete_topic(shard, &req).await,
        request::GET_BROKER_RUNTIME_INFO => runtime_info(shard, &req),
        request::VIEW_MESSAGE_BY_ID => view_message(shard, &req).await,
        request::QUERY_MESSAGE => query_message(&req),
        request::GET_TOPIC_STATS_INFO => topic_stats(shard, &req).await,
        request::GET_CONSUME_STATS => consume_stats(shard, &req).await,
        request::INVOKE_BROKER_TO_RESET_OFFSET => reset_offset(shard, &req).await,
        request::GET_CONSUMER_CONNECTION_LIST => consumer_connections(shard, &req),
        request::GET_ALL_DELAY_OFFSET => {
            Some(RemotingCommand::response_to(&req, response::SUCCESS, None).with_body(shard.schedule.offsets_json()))
        }
        code => {
            debug!(shard = shard.id, peer = %conn.peer(), code, "request code not supported");
            Some(RemotingCommand::not_supported(&req))
        }
    }
}

/// A topic as RocketMQ's `TopicConfig` body shows it; the flush mode rides in
/// `attributes` as `flush.mode`, the key topic creation reads.
pub fn wire_topic_config(t: &TopicConfig) -> body::TopicConfig {
    body::TopicConfig {
        attributes: BTreeMap::from([(FLUSH_MODE_ATTRIBUTE.to_string(), t.flush.to_string())]),
        order: t.order,
        perm: t.perm as i32,
        read_queue_nums: t.read_queues as i32,
        topic_filter_type: "SINGLE_TAG".to_string(),
        topic_name: t.name.clone(),
        topic_sys_flag: t.sys_flag as i32,
        write_queue_nums: t.write_queues as i32,
    }
}

fn success(req: &RemotingCommand, body: Vec<u8>) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body))
}

/// Our own bodies always encode; should one ever not, the client hears why.
fn encode_failed(req: &RemotingCommand, e: rockshard_net::Error) -> Option<RemotingCommand> {
    reply(req, response::SYSTEM_ERROR, format!("encoding the answer to request code {}: {e}", req.code))
}

/// GET_ALL_TOPIC_CONFIG (21): this shard's topics with this shard's queue counts.
fn all_topic_config(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let table = shard.store.topics().iter().map(|t| (t.name.clone(), wire_topic_config(t))).collect();
    let version = shard.topic_version.get() as i64;
    let wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion { counter: version, state_version: 0, timestamp: version },
        topic_config_table: table,
        ..Default::default()
    };
    match body::to_json(&wrapper) {
        Ok(json) => success(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// DELETE_TOPIC_IN_BROKER (215): removes the topic from every shard. Like Java, deleting
/// a topic that is not there succeeds; refusing would make a retried delete fail.
async fn delete_topic(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Err(e) = topics::check_topic_name(&h.topic) {
        return reply(req, response::INVALID_PARAMETER, e);
    }
    if topics::is_system_topic(&shard.config, &h.topic) {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!("topic `{}` is a system topic the broker needs; it cannot be deleted", h.topic),
        );
    }
    match topics::delete_topic_everywhere(shard, &h.topic).await {
        Ok(_) => Some(RemotingCommand::response_to(req, response::SUCCESS, None)),
        Err(e) => reply(req, response::SYSTEM_ERROR, format!("deleting topic `{}`: {e}", h.topic)),
    }
}

/// GET_BROKER_RUNTIME_INFO (28). Java's key names where the meaning is the same;
/// counters are since this shard's store was opened.
fn runtime_info(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let (min, flushed, written, _) = shard.store.commitlog_positions();
    let stats = shard.store.stats();
    let topics = shard.store.topics();
    let queues = shard.store.queue_infos();
    let mut table = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        table.insert(k.to_string(), v);
    };
    put("brokerVersionDesc", "V5_3_3".to_string());
    put("brokerVersion", version::CURRENT.to_string());
    put("brokerName", shard.broker_name.clone());
    put("brokerAddr", shard.addr.clone());
    put("clusterName", shard.config.cluster_name.clone());
    put("shardId", shard.id.to_string());
    put("shardCount", shard.config.shards.to_string());
    put("commitLogMinOffset", min.0.to_string());
    put("commitLogMaxOffset", written.0.to_string());
    put("commitLogFlushedOffset", flushed.0.to_string());
    put("topicCount", topics.len().to_string());
    put("queueCount", queues.len().to_string());
    put("messagesInQueues", queues.iter().map(|q| q.max_offset.0 - q.min_offset.0).sum::<u64>().to_string());
    put("autoCreateTopicEnable", shard.config.auto_create_topic.to_string());
    put("defaultFlushMode", shard.config.default_flush.to_string());
    put("appendedRecordsSinceStart", stats.appended_records.to_string());
    put("writesSinceStart", stats.writes.to_string());
    put("flushesSinceStart", stats.flushes.to_string());
    put("hotReadsSinceStart", stats.hot_reads.to_string());
    put("coldReadsSinceStart", stats.cold_reads.to_string());
    match body::to_json(&KVTable { table }) {
        Ok(json) => success(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// VIEW_MESSAGE_BY_ID (33): the whole stored record at `offset`.
async fn view_message(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ViewMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let not_found = |detail: String| {
        reply(req, response::SYSTEM_ERROR, format!("can not find message by the offset, {}: {detail}", h.offset))
    };
    let Ok(at) = u64::try_from(h.offset) else { return not_found("offsets are never negative".into()) };
    match shard.store.read_message(PhysicalOffset(at)).await {
        Ok(record) => success(req, record.to_vec()),
        Err(e) => not_found(e.to_string()),
    }
}

/// QUERY_MESSAGE (12): there is no key index to search, so nothing is ever found. The
/// Rust client requires both index fields even on this answer.
fn query_message(req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: QueryMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let mut answer = RemotingCommand::response_to(
        req,
        response::QUERY_NOT_FOUND,
        Some(format!(
            "can not find message, maybe time range not correct: this broker keeps no message key index \
             (topic `{}`, key `{}`); look messages up by their offset id instead",
            h.topic, h.key
        )),
    );
    answer.set_ext_header(&QueryMessageResponseHeader {
        index_last_update_timestamp_ms: 0,
        index_last_update_phyoffset: 0,
    });
    Some(answer)
}

/// Store time (ms) of the message at queue offset `at`, if it can be read.
async fn store_time_at(shard: &Shard, topic: &str, queue_id: i32, at: u64) -> Option<i64> {
    let got = shard.store.get_messages(topic, queue_id, QueueOffset(at), 1, 1, None).await.ok()?;
    let record = got.messages.first()?;
    Some(stored::decode_header(record).ok()??.store_timestamp_ms)
}

/// Queue ids of a topic on this shard: consumers read `0..read`, producers write
/// `0..write`; admin answers cover both.
fn queue_ids(t: &TopicConfig) -> std::ops::Range<i32> {
    0..t.read_queues.max(t.write_queues) as i32
}

fn no_topic(shard: &Shard, req: &RemotingCommand, topic: &str) -> Option<RemotingCommand> {
    reply(req, response::TOPIC_NOT_EXIST, format!("topic `{topic}` does not exist on {}", shard.broker_name))
}

fn queue(shard: &Shard, topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue { broker_name: shard.broker_name.clone(), queue_id, topic: topic.to_string() }
}

/// GET_TOPIC_STATS_INFO (202).
async fn topic_stats(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(t) = shard.store.topic(&h.topic) else { return no_topic(shard, req, &h.topic) };
    let mut table = TopicStatsTable::default();
    for qid in queue_ids(&t) {
        let (min, max) = shard.store.queue_offsets(&t.name, qid).map_or((0, 0), |(min, max)| (min.0, max.0));
        let last = match max {
            0 => 0,
            _ => store_time_at(shard, &t.name, qid, max - 1).await.unwrap_or(0),
        };
        table.offset_table.insert(
            queue(shard, &t.name, qid),
            TopicOffset { last_update_timestamp: last, max_offset: max as i64, min_offset: min as i64 },
        );
    }
    match table.encode() {
        Ok(json) => success(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// GET_CONSUME_STATS (208).
async fn consume_stats(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let group = h.consumer_group.as_str();
    let topics: Vec<TopicConfig> = match h.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(name) => match shard.store.topic(name) {
            Some(t) => vec![t],
            None => return no_topic(shard, req, name),
        },
        // Every topic where the group committed an offset (and which still exists).
        None => shard.offsets.topics_of_group(group).iter().filter_map(|name| shard.store.topic(name)).collect(),
    };
    let mut stats = ConsumeStats::default();
    for t in &topics {
        for qid in queue_ids(t) {
            let broker_offset = shard.store.queue_offsets(&t.name, qid).map_or(0, |(_, max)| max.0 as i64);
            // Java reports a queue the group never committed as consumer offset 0.
            let consumer_offset = shard.offsets.get(group, &t.name, qid).unwrap_or(0).max(0);
            let last_timestamp = match consumer_offset {
                0 => 0,
                c => store_time_at(shard, &t.name, qid, c as u64 - 1).await.unwrap_or(0),
            };
            stats.offset_table.insert(
                queue(shard, &t.name, qid),
                OffsetWrapper { broker_offset, consumer_offset, last_timestamp, pull_offset: consumer_offset },
            );
        }
    }
    match stats.encode() {
        Ok(json) => success(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): for each queue of the topic here (or the one
/// named), the offset of the first message stored at or after the time (the end of the
/// queue when none is, or when the time is -1) becomes the group's committed offset.
/// Without `isForce` an offset only moves backwards. The answer lists the new offsets.
async fn reset_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ResetOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(t) = shard.store.topic(&h.topic) else { return no_topic(shard, req, &h.topic) };
    let one_queue = h.queue_id.filter(|q| *q >= 0);
    let queues: Vec<i32> = match one_queue {
        Some(q) if !queue_ids(&t).contains(&q) => {
            return reply(
                req,
                response::INVALID_PARAMETER,
                format!(
                    "queue {q} of topic `{}` is not on {} (it has queues 0 to {})",
                    t.name,
                    shard.broker_name,
                    queue_ids(&t).end - 1
                ),
            );
        }
        Some(q) => vec![q],
        None => queue_ids(&t).collect(),
    };
    let mut body = ResetOffsetBody::default();
    for qid in queues {
        let (min, max) = shard.store.queue_offsets(&t.name, qid).map_or((0, 0), |(min, max)| (min.0, max.0));
        let target = match (one_queue, h.offset) {
            (Some(_), Some(offset)) => offset.clamp(min as i64, max as i64),
            _ if h.timestamp_ms < 0 => max as i64,
            _ => match shard.store.offset_by_time(&t.name, qid, h.timestamp_ms, Boundary::Lower).await {
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
        let current = shard.offsets.get(&h.group, &t.name, qid);
        let new = match current {
            Some(c) if !h.is_force && target >= c => c,
            _ => {
                shard.offsets.reset(&h.group, &t.name, qid, target);
                target
            }
        };
        body.offset_table.insert(queue(shard, &t.name, qid), new);
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
    for conn in shard.groups.consumer_connections(&h.group) {
        conn.send_oneway(notice.clone());
    }
    success(req, json)
}

/// GET_CONSUMER_CONNECTION_LIST (203): who of a consumer group is connected here.
fn consumer_connections(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ConsumerGroupRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(group) = shard.groups.consumer_group(&h.consumer_group).filter(|g| !g.members.is_empty()) else {
        return reply(
            req,
            response::CONSUMER_NOT_ONLINE,
            format!("the consumer group `{}` is not online on {}", h.consumer_group, shard.broker_name),
        );
    };
    let body = ConsumerConnection {
        connection_set: group
            .members
            .iter()
            .map(|m| ClientConnection {
                client_addr: m.peer.map_or_else(String::new, |p| p.to_string()),
                client_id: m.client_id.clone(),
                language: m.language.name().to_string(),
                version: m.version,
            })
            .collect(),
        consume_from_where: group.consume_from_where,
        consume_type: group.consume_type,
        message_model: group.message_model,
        subscription_table: group.subscriptions.into_iter().map(|s| (s.topic.clone(), s)).collect(),
    };
    match body::to_json(&body) {
        Ok(json) => success(req, json),
        Err(e) => encode_failed(req, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs_carry_the_flush_mode_as_an_attribute() {
        let mut t = TopicConfig::new("T", 3, rockshard_storage::FlushMode::Sync);
        t.read_queues = 2;
        t.order = true;
        let wire = wire_topic_config(&t);
        assert_eq!(wire.attributes.get("flush.mode").map(String::as_str), Some("sync"));
        assert_eq!((wire.read_queue_nums, wire.write_queue_nums, wire.perm, wire.order), (2, 3, 6, true));
        assert_eq!(queue_ids(&t), 0..3);
        // What the wire form says is what topic creation would read back.
        let attrs = format!("+{}={}", FLUSH_MODE_ATTRIBUTE, wire.attributes["flush.mode"]);
        assert_eq!(topics::flush_mode_attribute(&attrs), Ok(Some(rockshard_storage::FlushMode::Sync)));
    }
}
