//! What the layers above may read of a shard: its topics, queue ends, stored messages,
//! store figures, and where a replicated group would rather serve a reader. Reads only:
//! every write goes through the other operations.
//!
//! Handlers and tasks never hold the store itself; these methods are the whole of what
//! they see of it, so a change of the store's API touches this file, not every handler.
//!
//! Runs on the shard's executor. Deliberately not here: caching (the store's read cache
//! serves hot reads) and deciding answers (the handlers).

use std::collections::BTreeMap;

use bytes::Bytes;
use rockshard_net::body::MessageQueue;
use rockshard_net::code::version;
use rockshard_net::stored;
use rockshard_storage::{Boundary, GetResult, PhysicalOffset, QueueOffset, StorageError, TopicConfig};

use super::replication::furthest_follower;
use super::Shard;

type StorageResult<T> = std::result::Result<T, StorageError>;

impl Shard {
    /// This shard's config of `name`, if it has the topic.
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.store.topic(name)
    }

    /// Every topic this shard has.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.store.topics()
    }

    /// (min, max) offset of a queue this shard has; max is the next offset to be written.
    pub fn queue_offsets(&self, topic: &str, queue_id: i32) -> Option<(QueueOffset, QueueOffset)> {
        self.store.queue_offsets(topic, queue_id)
    }

    /// Up to `max_messages` records (and about `max_bytes`) of a queue from `offset`,
    /// skipping those whose tag code `filter` refuses.
    pub async fn read_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_messages: u32,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> StorageResult<GetResult> {
        self.store.get_messages(topic, queue_id, offset, max_messages, max_bytes, filter).await
    }

    /// The whole stored record at a CommitLog offset.
    pub async fn read_message(&self, at: PhysicalOffset) -> StorageResult<Bytes> {
        self.store.read_message(at).await
    }

    /// The queue offset for a store time.
    pub async fn offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        time_ms: i64,
        boundary: Boundary,
    ) -> StorageResult<QueueOffset> {
        self.store.offset_by_time(topic, queue_id, time_ms, boundary).await
    }

    /// The store time of a queue's first readable message, if it has one.
    pub async fn earliest_store_time(&self, topic: &str, queue_id: i32) -> StorageResult<Option<i64>> {
        self.store.earliest_store_time(topic, queue_id).await
    }

    /// Store time (ms) of the message at queue offset `at`, if it can be read.
    pub async fn store_time_at(&self, topic: &str, queue_id: i32, at: u64) -> Option<i64> {
        let got = self.store.get_messages(topic, queue_id, QueueOffset(at), 1, 1, None).await.ok()?;
        let record = got.messages.first()?;
        Some(stored::decode_header(record).ok()??.store_timestamp_ms)
    }

    /// A queue of this shard as RocketMQ names it in admin answers.
    pub fn message_queue(&self, topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue { broker_name: self.broker_name.clone(), queue_id, topic: topic.to_string() }
    }

    /// GET_BROKER_RUNTIME_INFO's table. Java's key names where the meaning is the same;
    /// counters are since this shard's store was opened.
    pub fn runtime_info(&self) -> BTreeMap<String, String> {
        let (min, flushed, written, _) = self.store.commitlog_positions();
        let stats = self.store.stats();
        let topics = self.store.topics();
        let queues = self.store.queue_infos();
        let mut table = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            table.insert(k.to_string(), v);
        };
        put("brokerVersionDesc", "V5_3_3".to_string());
        put("brokerVersion", version::CURRENT.to_string());
        put("brokerName", self.broker_name.clone());
        put("brokerAddr", self.addr.clone());
        put("clusterName", self.config.cluster_name.clone());
        put("shardId", self.id.to_string());
        put("shardCount", self.config.shards.to_string());
        put("commitLogMinOffset", min.0.to_string());
        put("commitLogMaxOffset", written.0.to_string());
        put("commitLogFlushedOffset", flushed.0.to_string());
        put("topicCount", topics.len().to_string());
        put("queueCount", queues.len().to_string());
        put("messagesInQueues", queues.iter().map(|q| q.max_offset.0 - q.min_offset.0).sum::<u64>().to_string());
        put("autoCreateTopicEnable", self.config.auto_create_topic.to_string());
        put("defaultFlushMode", self.config.default_flush.to_string());
        put("appendedRecordsSinceStart", stats.appended_records.to_string());
        put("writesSinceStart", stats.writes.to_string());
        put("flushesSinceStart", stats.flushes.to_string());
        put("hotReadsSinceStart", stats.hot_reads.to_string());
        put("coldReadsSinceStart", stats.cold_reads.to_string());
        table
    }

    /// Where a replicated group would rather serve this consumer's next pull (RocketMQ's
    /// suggestWhichBrokerId, which clients follow), given the first record a pull found:
    /// a consumer reading older than the hot window from the leader is sent to the
    /// follower furthest along, so catching up does not take the leader's disk and cores
    /// from live traffic; one back inside the hot window on a follower is sent back to
    /// the leader. `None`: stay (the answer says 0, the master, as a single node always
    /// does).
    pub fn suggest_broker(&self, first: &[u8]) -> Option<i64> {
        let replica = self.replica.get()?;
        let at = stored::decode_header(first).ok().flatten()?.physical_offset;
        let end = self.store.commitlog_positions().3 .0 as i64;
        let cold = end.saturating_sub(at) as u64 > self.config.hot_window_bytes;
        match (replica.is_leader(), cold) {
            (true, true) => furthest_follower(&replica.status()).map(|id| id as i64),
            (false, true) => Some(self.broker_id()),
            (_, false) => None,
        }
    }
}
