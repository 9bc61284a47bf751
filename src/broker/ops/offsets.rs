//! Consumer offsets of one shard, as operations: committing, resetting and replacing
//! them, answering what a group committed, and keeping `config/consumerOffset.json`.
//!
//! Persistence: the file is saved atomically by the store (old or new file survives any
//! crash) every `CONSUMER_OFFSET_PERSIST_INTERVAL_MS` when something changed (the task in
//! `tasks::housekeeping`), and at shutdown. A crash loses at most one interval of
//! progress; consumers then re-consume it (RocketMQ's at-least-once).
//!
//! Invariants: saves are serialised (one at a time, the periodic one and shutdown's),
//! and each writes a snapshot taken after the previous save finished, so an older table
//! never overwrites a newer one. An unreadable offsets file stops the shard from opening
//! rather than silently sending every group back to its consume-from-where position.
//! Only a leader takes an offset carried by a pull ([`Shard::commit_pulled_offset`]),
//! as RocketMQ's master alone does: a replicated follower gets its leader's table.
//!
//! Runs on the shard's executor; the table is borrowed only inside synchronous
//! closures ([`StateCell`]), the file written after the borrow ended.
//!
//! Deliberately not here: the table's rules and file format (`state::offsets`), and
//! replicating the table (`ops::replication` proposes it, `tasks::replication` when).

use glommio::sync::Semaphore;
use rockshard_net::stored;
use rockshard_storage::{QueueOffset, StorageError, Store};

use super::Shard;
use crate::broker::state::offsets::{ConsumerOffsets, OffsetTable, OFFSETS_FILE};
use crate::broker::state::StateCell;
use crate::{Error, Result};

/// Reads the offsets file (an empty table when there is none).
pub async fn load(store: &Store) -> Result<ConsumerOffsets> {
    let table = match store.load_config_file(OFFSETS_FILE).await? {
        None => OffsetTable::default(),
        Some(bytes) => OffsetTable::from_json(&bytes).map_err(|detail| Error::Config {
            key: format!("{}/config/{OFFSETS_FILE}", store.config().dir.display()),
            detail: format!("unreadable consumer offsets: {detail}"),
        })?,
    };
    Ok(ConsumerOffsets::new(table))
}

/// Saves the table if it changed since the last save; `saving` lets one save run at a
/// time.
pub async fn persist(store: &Store, offsets: &StateCell<ConsumerOffsets>, saving: &Semaphore) -> Result<()> {
    // The semaphore is never closed, so waiting for it cannot fail.
    let _one_at_a_time = saving.acquire_permit(1).await.ok();
    let Some(bytes) = offsets.write(ConsumerOffsets::begin_save) else { return Ok(()) };
    if let Err(e) = store.save_config_file(OFFSETS_FILE, bytes).await {
        offsets.write(ConsumerOffsets::save_failed);
        return Err(e.into());
    }
    Ok(())
}

impl Shard {
    /// Saves the shard's offsets if they changed since the last save.
    pub async fn persist_offsets(&self) -> Result<()> {
        persist(&self.store, &self.offsets, &self.offsets_saving).await
    }

    /// Records `offset` as `group`'s committed offset of the queue (UPDATE_CONSUMER_OFFSET).
    pub fn commit_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.offsets.write(|o| o.commit(group, topic, queue_id, offset));
    }

    /// Records an offset a pull carried (the commit-offset bit). As RocketMQ: only the
    /// master takes offsets carried by pulls; a replicated follower gets its leader's
    /// table instead.
    pub fn commit_pulled_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if self.is_leader() {
            self.commit_offset(group, topic, queue_id, offset);
        }
    }

    /// Sets a group's offset by operator's order (INVOKE_BROKER_TO_RESET_OFFSET).
    pub fn reset_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.offsets.write(|o| o.reset(group, topic, queue_id, offset));
    }

    /// What `group` committed for the queue, if anything.
    pub fn committed_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offsets.read(|o| o.get(group, topic, queue_id))
    }

    /// Topics `group` has offsets on, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        self.offsets.read(|o| o.topics_of_group(group))
    }

    /// Counts changes of the table; equal values mean the same table.
    pub fn offsets_version(&self) -> u64 {
        self.offsets.read(ConsumerOffsets::version)
    }

    /// The table in consumerOffset.json's form (a leader's snapshot for its followers).
    pub fn offsets_json(&self) -> Vec<u8> {
        self.offsets.read(ConsumerOffsets::to_json)
    }

    /// Takes a leader's table as it is (a follower applying its snapshot).
    pub fn replace_offsets(&self, table: OffsetTable) {
        self.offsets.write(|o| o.replace(table));
    }

    /// RocketMQ's rule for a group without an offset: whether it starts the queue at 0
    /// (the queue still begins at 0 and its first message is within the hot window).
    pub async fn starts_young(&self, topic: &str, queue_id: i32) -> std::result::Result<bool, StorageError> {
        starts_young(&self.store, topic, queue_id).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()>>(f: F) {
        glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    #[test]
    fn offsets_survive_a_store_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = rockshard_storage::StoreConfig::new(dir.path());
        run(async {
            let store = Store::open(config.clone()).await.expect("store opens");
            let offsets = StateCell::new(load(&store).await.expect("no file yet"));
            let saving = Semaphore::new(1);
            assert_eq!(offsets.read(|o| o.get("G", "T", 0)), None);
            offsets.write(|o| o.commit("G", "T", 0, 17));
            offsets.write(|o| o.commit("G", "T", 3, 4));
            offsets.write(|o| o.reset("H", "T", 1, 2));
            assert!(offsets.read(ConsumerOffsets::is_dirty));
            persist(&store, &offsets, &saving).await.expect("saved");
            assert!(!offsets.read(ConsumerOffsets::is_dirty), "saved: nothing left to save");
            // A commit of the offset already stored does not make the table dirty.
            offsets.write(|o| o.commit("G", "T", 0, 17));
            assert!(!offsets.read(ConsumerOffsets::is_dirty));
            // A change after the save stays only in memory unless saved again.
            offsets.write(|o| o.commit("G", "T", 0, 99));
            store.close().await.expect("store closes");

            let store = Store::open(config.clone()).await.expect("store reopens");
            let back = StateCell::new(load(&store).await.expect("file reads"));
            assert_eq!(back.read(|o| o.get("G", "T", 0)), Some(17));
            assert_eq!(back.read(|o| o.get("G", "T", 3)), Some(4));
            assert_eq!(back.read(|o| o.get("H", "T", 1)), Some(2));
            assert_eq!(back.read(|o| o.groups_of_topic("T")), ["G", "H"]);
            back.write(|o| o.commit("G", "T", 0, 99));
            persist(&store, &back, &saving).await.expect("saved");
            store.close().await.expect("store closes");

            let store = Store::open(config.clone()).await.expect("store reopens");
            let again = load(&store).await.expect("file reads");
            assert_eq!(again.get("G", "T", 0), Some(99));
            // A damaged file refuses to load rather than forgetting every offset.
            store.save_config_file(OFFSETS_FILE, b"{\"version\":1,".to_vec()).await.expect("written");
            let err = load(&store).await.expect_err("refused");
            assert!(err.to_string().contains("unreadable consumer offsets"), "{err}");
            store.close().await.expect("store closes");
        });
    }
}
