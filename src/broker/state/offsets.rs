//! Consumer offsets of one shard, and the queue-offset questions clients ask.
//!
//! Serves QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15, usually oneway),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31) and
//! GET_EARLIEST_MSG_STORETIME (32). Owns the table (group, topic, queueId) → next offset
//! the group will consume, fed by UPDATE_CONSUMER_OFFSET and by pulls carrying the
//! commit-offset bit (`commit`), read back by consumers that take over a queue and by
//! admin (consumer progress, reset by time).
//!
//! Persistence: `config/consumerOffset.json` in the shard's store, saved atomically by the
//! store (old or new file survives any crash) every `CONSUMER_OFFSET_PERSIST_INTERVAL_MS`
//! when something changed, and at shutdown. A crash loses at most one interval of
//! progress; consumers then re-consume it (RocketMQ's at-least-once). The file is this
//! shard's own:
//!
//! ```text
//! {"version":1,"offsets":[{"group":"G","topic":"T","queues":{"0":12,"1":40}}, ...]}
//! ```
//!
//! Invariants: saves are serialised (one at a time), and each writes a snapshot taken
//! after the previous save finished, so an older table never overwrites a newer one. No
//! `RefCell` borrow is held across an `.await`. An unreadable offsets file stops the
//! shard from opening rather than silently sending every group back to its
//! consume-from-where position.
//!
//! Runs on the shard's executor only. Deliberately not here: offsets of broadcasting
//! consumers (clients keep those locally), static-topic offset mapping, and the
//! server-side offset-reset lock Java has behind a flag (`useServerSideResetOffset`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use rockshard_net::code::{request, response};
use rockshard_net::headers::{
    BoundaryType, CommandHeader, GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader, GetMinOffsetResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use rockshard_net::{stored, RemotingCommand};
use rockshard_storage::{Boundary, QueueOffset, StorageError, Store};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::broker::shard::{bad_header, reply, storage_error_code, Shard};
use crate::limits::CONSUMER_OFFSET_PERSIST_INTERVAL_MS;
use crate::remoting::server::Connection;
use crate::{Error, Result};

/// The offsets file, under the store's `config/` directory (RocketMQ's name).
pub const OFFSETS_FILE: &str = "consumerOffset.json";
const OFFSETS_FILE_VERSION: u32 = 1;

/// The persisted form of the table: one entry per (group, topic), sorted.
#[derive(Debug, Serialize, Deserialize)]
struct OffsetFile {
    version: u32,
    offsets: Vec<OffsetEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetEntry {
    group: String,
    topic: String,
    /// Queue id → offset; JSON object keys are strings, serde turns them back to i32.
    queues: BTreeMap<i32, i64>,
}

/// (group, topic, queueId) → offset. Two levels of maps keyed by owned strings, so the
/// hot path (a pull's commit of an offset already known) looks up by `&str` without
/// allocating.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetTable {
    groups: HashMap<String, HashMap<String, BTreeMap<i32, i64>>>,
}

impl OffsetTable {
    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.groups.get(group)?.get(topic)?.get(&queue_id).copied()
    }

    /// Sets an offset; true when the table changed.
    pub fn set(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) -> bool {
        let topics = match self.groups.get_mut(group) {
            Some(t) => t,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let queues = match topics.get_mut(topic) {
            Some(q) => q,
            None => topics.entry(topic.to_owned()).or_default(),
        };
        queues.insert(queue_id, offset) != Some(offset)
    }

    /// Groups with an offset on `topic`, sorted.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let mut groups: Vec<String> =
            self.groups.iter().filter(|(_, topics)| topics.contains_key(topic)).map(|(g, _)| g.clone()).collect();
        groups.sort();
        groups
    }

    /// Topics `group` has offsets on, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let mut topics: Vec<String> = self.groups.get(group).map(|t| t.keys().cloned().collect()).unwrap_or_default();
        topics.sort();
        topics
    }

    /// `group`'s offsets on `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        self.groups
            .get(group)
            .and_then(|t| t.get(topic))
            .map(|q| q.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Every group, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.groups.keys().cloned().collect();
        groups.sort();
        groups
    }

    /// Forgets everything `group` committed; true if it had anything.
    pub fn remove_group(&mut self, group: &str) -> bool {
        self.groups.remove(group).is_some()
    }

    /// Forgets every group's offsets on `topic` (the topic was deleted); true if any.
    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let mut removed = false;
        self.groups.retain(|_, topics| {
            removed |= topics.remove(topic).is_some();
            !topics.is_empty()
        });
        removed
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut offsets: Vec<OffsetEntry> = self
            .groups
            .iter()
            .flat_map(|(group, topics)| {
                topics.iter().map(|(topic, queues)| OffsetEntry {
                    group: group.clone(),
                    topic: topic.clone(),
                    queues: queues.clone(),
                })
            })
            .collect();
        offsets.sort_by(|a, b| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)));
        let file = OffsetFile { version: OFFSETS_FILE_VERSION, offsets };
        // Strings, integers and maps with integer keys always serialise.
        serde_json::to_vec(&file).expect("offset table serialises")
    }

    pub fn from_json(bytes: &[u8]) -> std::result::Result<OffsetTable, String> {
        let file: OffsetFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != OFFSETS_FILE_VERSION {
            return Err(format!("version {} (this build reads {OFFSETS_FILE_VERSION})", file.version));
        }
        let mut table = OffsetTable::default();
        for entry in file.offsets {
            let topics = table.groups.entry(entry.group).or_default();
            topics.entry(entry.topic).or_default().extend(entry.queues);
        }
        Ok(table)
    }
}

/// The shard's consumer offsets.
pub struct ConsumerOffsets {
    table: RefCell<OffsetTable>,
    /// Set when the table changed since the last save began.
    dirty: Cell<bool>,
    /// One save at a time (the periodic one and shutdown's may overlap).
    saving: glommio::sync::Semaphore,
    /// Bumped on every change: a replicated leader sends a snapshot when it moved.
    version: Cell<u64>,
}

impl ConsumerOffsets {
    /// Reads the offsets file (an empty table when there is none).
    pub async fn load(store: &Store) -> Result<ConsumerOffsets> {
        let table = match store.load_config_file(OFFSETS_FILE).await? {
            None => OffsetTable::default(),
            Some(bytes) => OffsetTable::from_json(&bytes).map_err(|detail| Error::Config {
                key: format!("{}/config/{OFFSETS_FILE}", store.config().dir.display()),
                detail: format!("unreadable consumer offsets: {detail}"),
            })?,
        };
        Ok(ConsumerOffsets {
            table: RefCell::new(table),
            dirty: Cell::new(false),
            saving: glommio::sync::Semaphore::new(1),
            version: Cell::new(0),
        })
    }

    /// Saves the table if it changed since the last save.
    pub async fn persist(&self, store: &Store) -> Result<()> {
        // The semaphore is never closed, so waiting for it cannot fail.
        let _one_at_a_time = self.saving.acquire_permit(1).await.ok();
        if !self.dirty.replace(false) {
            return Ok(());
        }
        let bytes = self.table.borrow().to_json();
        if let Err(e) = store.save_config_file(OFFSETS_FILE, bytes).await {
            self.dirty.set(true);
            return Err(e.into());
        }
        Ok(())
    }

    /// Records `offset` as `group`'s committed offset of the queue.
    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if self.table.borrow_mut().set(group, topic, queue_id, offset) {
            self.changed();
        }
    }

    fn changed(&self) {
        self.dirty.set(true);
        self.version.set(self.version.get() + 1);
    }

    /// Counts changes; equal values mean the same table.
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// The table in consumerOffset.json's form.
    pub fn to_json(&self) -> Vec<u8> {
        self.table.borrow().to_json()
    }

    /// Replaces the whole table (a follower applying its leader's snapshot).
    pub fn replace(&self, table: OffsetTable) {
        *self.table.borrow_mut() = table;
        self.changed();
    }

    /// Sets a group's offset by operator's order (reset to a time or an offset); the
    /// same as a commit, named for what admin means by it.
    pub fn reset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.commit(group, topic, queue_id, offset);
    }

    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table.borrow().get(group, topic, queue_id)
    }

    /// Groups with an offset on `topic`, sorted.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        self.table.borrow().groups_of_topic(topic)
    }

    /// Topics `group` has offsets on, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        self.table.borrow().topics_of_group(group)
    }

    /// `group`'s offsets on `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        self.table.borrow().queue_offsets(group, topic)
    }

    /// Every group with offsets here, sorted.
    pub fn group_names(&self) -> Vec<String> {
        self.table.borrow().group_names()
    }

    pub fn remove_group(&self, group: &str) -> bool {
        let removed = self.table.borrow_mut().remove_group(group);
        if removed {
            self.changed();
        }
        removed
    }

    pub fn remove_topic(&self, topic: &str) -> bool {
        let removed = self.table.borrow_mut().remove_topic(topic);
        if removed {
            self.changed();
        }
        removed
    }
}

/// Saves changed offsets every `CONSUMER_OFFSET_PERSIST_INTERVAL_MS` until shutdown (the
/// shard's `close` saves the last time).
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let tick = Duration::from_millis(CONSUMER_OFFSET_PERSIST_INTERVAL_MS);
        loop {
            let stop = shard.shutdown.sleep(tick).await;
            if stop {
                break;
            }
            if let Err(e) = shard.offsets.persist(&shard.store).await {
                // Kept dirty: the next tick tries again.
                warn!(shard = shard.id, error = %e, "saving consumer offsets failed");
            }
        }
    })
    .detach();
}

pub async fn handle(shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    // UPDATE_CONSUMER_OFFSET arrives oneway: the shard drops its answer, after logging a
    // refusal.
    match req.code {
        request::QUERY_CONSUMER_OFFSET => query_consumer_offset(shard, &req).await,
        request::UPDATE_CONSUMER_OFFSET => update_consumer_offset(shard, &req),
        request::GET_MAX_OFFSET => max_offset(shard, &req),
        request::GET_MIN_OFFSET => min_offset(shard, &req),
        request::SEARCH_OFFSET_BY_TIMESTAMP => search_offset(shard, &req).await,
        request::GET_EARLIEST_MSG_STORETIME => earliest_store_time(shard, &req).await,
        _ => Some(RemotingCommand::not_supported(&req)),
    }
}

/// A SUCCESS answer carrying response header `header`.
fn success<H: CommandHeader>(req: &RemotingCommand, header: &H) -> Option<RemotingCommand> {
    let mut answer = RemotingCommand::response_to(req, response::SUCCESS, None);
    answer.set_ext_header(header);
    Some(answer)
}

fn storage_failure(req: &RemotingCommand, e: &StorageError) -> Option<RemotingCommand> {
    reply(req, storage_error_code(e), e.to_string())
}

async fn query_consumer_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: QueryConsumerOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Some(offset) = shard.offsets.get(&h.consumer_group, &h.topic, h.queue_id).filter(|o| *o >= 0) {
        return success(req, &QueryConsumerOffsetResponseHeader { offset });
    }
    if h.set_zero_if_not_found == Some(false) {
        return reply(req, response::QUERY_NOT_FOUND, "Not found, do not set to zero, maybe this group boot first");
    }
    match starts_young(&shard.store, &h.topic, h.queue_id).await {
        Ok(true) => success(req, &QueryConsumerOffsetResponseHeader { offset: 0 }),
        // Java's remark, word for word; the client then applies its consume-from-where.
        Ok(false) => {
            reply(req, response::QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
        }
        Err(e) => storage_failure(req, &e),
    }
}

/// RocketMQ's rule for a group without an offset: start from 0 when the queue still
/// begins at 0 and its first message is still in the page cache — the queue is young,
/// there is little to replay, and a new group sees what was sent just before it
/// started. Otherwise the client's consume-from-where decides. (Java 5 asks the page
/// cache; the store's hot window is our page-cache horizon.)
async fn starts_young(store: &Store, topic: &str, queue_id: i32) -> std::result::Result<bool, StorageError> {
    let Some((min, max)) = store.queue_offsets(topic, queue_id) else { return Ok(false) };
    if min.0 != 0 || max.0 == 0 {
        return Ok(false);
    }
    let got = store.get_messages(topic, queue_id, QueueOffset(0), 1, 1, None).await?;
    let Some(first) = got.messages.first() else { return Ok(false) };
    let Ok(Some(header)) = stored::decode_header(first) else { return Ok(false) };
    let (_, _, written, _) = store.commitlog_positions();
    let hot_from = written.0.saturating_sub(store.config().hot_window_bytes);
    Ok(u64::try_from(header.physical_offset).is_ok_and(|at| at >= hot_from))
}

fn update_consumer_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: UpdateConsumerOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if shard.store.topic(&h.topic).is_none() {
        return reply(req, response::TOPIC_NOT_EXIST, format!("Topic {} not exist!", h.topic));
    }
    if h.queue_id < 0 || h.commit_offset < 0 {
        return reply(
            req,
            response::INVALID_PARAMETER,
            format!("queueId {} and commitOffset {} must not be negative", h.queue_id, h.commit_offset),
        );
    }
    shard.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    Some(RemotingCommand::response_to(req, response::SUCCESS, None))
}

/// GET_MAX_OFFSET: the next offset to be written; 0 for a queue this shard does not
/// have, as RocketMQ answers.
fn max_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetMaxOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let offset = shard.store.queue_offsets(&h.topic, h.queue_id).map_or(0, |(_, max)| max.0 as i64);
    success(req, &GetMaxOffsetResponseHeader { offset })
}

/// GET_MIN_OFFSET: the smallest offset still readable; 0 for a missing queue.
fn min_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetMinOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let offset = shard.store.queue_offsets(&h.topic, h.queue_id).map_or(0, |(min, _)| min.0 as i64);
    success(req, &GetMinOffsetResponseHeader { offset })
}

async fn search_offset(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: SearchOffsetRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let boundary = match h.boundary() {
        BoundaryType::Lower => Boundary::Lower,
        BoundaryType::Upper => Boundary::Upper,
    };
    match shard.store.offset_by_time(&h.topic, h.queue_id, h.timestamp_ms, boundary).await {
        Ok(offset) => success(req, &SearchOffsetResponseHeader { offset: offset.0 as i64 }),
        Err(e) => storage_failure(req, &e),
    }
}

/// GET_EARLIEST_MSG_STORETIME: -1 when the queue has no readable message (Java's
/// "unknown").
async fn earliest_store_time(shard: &Rc<Shard>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: GetEarliestMsgStoretimeRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    match shard.store.earliest_store_time(&h.topic, h.queue_id).await {
        Ok(t) => success(req, &GetEarliestMsgStoretimeResponseHeader { timestamp_ms: t.unwrap_or(-1) }),
        Err(e) => storage_failure(req, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_changes_and_get_reads_back() {
        let mut t = OffsetTable::default();
        assert_eq!(t.get("G", "T", 0), None);
        assert!(t.set("G", "T", 0, 5));
        assert!(!t.set("G", "T", 0, 5), "the same offset again is no change (no save needed)");
        assert!(t.set("G", "T", 0, 4), "going back is a change too (resets do it)");
        assert!(t.set("G", "T", 1, 9));
        assert!(t.set("H", "T", 0, 1));
        assert!(t.set("G", "U", 3, 2));
        assert_eq!(t.get("G", "T", 0), Some(4));
        assert_eq!(t.get("G", "T", 2), None);
        assert_eq!(t.get("X", "T", 0), None);
        assert_eq!(t.queue_offsets("G", "T"), [(0, 4), (1, 9)]);
        assert_eq!(t.groups_of_topic("T"), ["G", "H"]);
        assert_eq!(t.groups_of_topic("U"), ["G"]);
        assert_eq!(t.topics_of_group("G"), ["T", "U"]);
        assert_eq!(t.group_names(), ["G", "H"]);
    }

    #[test]
    fn json_round_trip_keeps_every_offset() {
        let mut t = OffsetTable::default();
        t.set("G", "T", 0, 12);
        t.set("G", "T", 1, 40);
        t.set("%RETRY%G", "%RETRY%G", 0, 3);
        t.set("H", "T", 7, i64::MAX);
        let json = t.to_json();
        assert_eq!(OffsetTable::from_json(&json), Ok(t.clone()));
        let text = String::from_utf8(json).expect("utf8");
        assert!(
            text.starts_with(r#"{"version":1,"offsets":[{"group":"%RETRY%G","topic":"%RETRY%G","queues":{"0":3}},{"group":"G","topic":"T","queues":{"0":12,"1":40}}"#),
            "{text}"
        );
        // Deterministic: the same table always writes the same bytes.
        assert_eq!(t.clone().to_json(), t.to_json());
        assert_eq!(OffsetTable::from_json(&OffsetTable::default().to_json()), Ok(OffsetTable::default()));
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        assert!(OffsetTable::from_json(b"{").is_err());
        assert!(
            OffsetTable::from_json(br#"{"version":1,"offsets":[{"group":"G","topic":"T","queues":{"x":1}}]}"#).is_err()
        );
        let err = OffsetTable::from_json(br#"{"version":2,"offsets":[]}"#).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }

    fn run<F: std::future::Future<Output = ()>>(f: F) {
        glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    #[test]
    fn offsets_survive_a_store_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = rockshard_storage::StoreConfig::new(dir.path());
        run(async {
            let store = Store::open(config.clone()).await.expect("store opens");
            let offsets = ConsumerOffsets::load(&store).await.expect("no file yet");
            assert_eq!(offsets.get("G", "T", 0), None);
            offsets.commit("G", "T", 0, 17);
            offsets.commit("G", "T", 3, 4);
            offsets.reset("H", "T", 1, 2);
            assert!(offsets.dirty.get());
            offsets.persist(&store).await.expect("saved");
            assert!(!offsets.dirty.get(), "saved: nothing left to save");
            // A commit of the offset already stored does not make the table dirty.
            offsets.commit("G", "T", 0, 17);
            assert!(!offsets.dirty.get());
            // A change after the save stays only in memory unless saved again.
            offsets.commit("G", "T", 0, 99);
            store.close().await.expect("store closes");

            let store = Store::open(config.clone()).await.expect("store reopens");
            let back = ConsumerOffsets::load(&store).await.expect("file reads");
            assert_eq!(back.get("G", "T", 0), Some(17));
            assert_eq!(back.get("G", "T", 3), Some(4));
            assert_eq!(back.get("H", "T", 1), Some(2));
            assert_eq!(back.groups_of_topic("T"), ["G", "H"]);
            back.commit("G", "T", 0, 99);
            back.persist(&store).await.expect("saved");
            store.close().await.expect("store closes");

            let store = Store::open(config.clone()).await.expect("store reopens");
            let again = ConsumerOffsets::load(&store).await.expect("file reads");
            assert_eq!(again.get("G", "T", 0), Some(99));
            // A damaged file refuses to load rather than forgetting every offset.
            store.save_config_file(OFFSETS_FILE, b"{\"version\":1,".to_vec()).await.expect("written");
            let err = ConsumerOffsets::load(&store).await.err().expect("refused");
            assert!(err.to_string().contains("unreadable consumer offsets"), "{err}");
            store.close().await.expect("store closes");
        });
    }

    #[test]
    fn removing_groups_and_topics() {
        let mut t = OffsetTable::default();
        t.set("G", "T", 0, 1);
        t.set("G", "U", 0, 1);
        t.set("H", "T", 0, 1);
        assert!(t.remove_topic("T"));
        assert!(!t.remove_topic("T"));
        assert_eq!(t.group_names(), ["G"], "H had only T and is gone with it");
        assert!(t.remove_group("G"));
        assert!(!t.remove_group("G"));
        assert_eq!(t, OffsetTable::default());
    }
}
