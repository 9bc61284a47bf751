//! The store's topic table and its owner's `config/` files: lookups, changes, and the
//! saves that make them durable (`config_file.rs` orders the saves of each file).
//!
//! Owns [`ConfigState`]: the topic table (written only by `upsert_topic` and
//! `remove_topic`, read by every flush-mode lookup of the append path) and the save
//! order of the `config/` files. Others see the table through `Store::flush_mode`, and
//! its save state through [`Inner::topics_unsaved`] and [`Inner::save_topics`] (the
//! maintenance task retries a failed save; `close` makes the last one).
//!
//! Invariant: a topic change is in memory (and applies to the next append) before its
//! save starts; a failed save leaves the change in memory and offered for saving again.
//! No `RefCell` borrow is held across an `.await`: a save takes a snapshot of the table.
//!
//! Runs on the store's executor, in the caller's task (or the maintenance task's).
//! Deliberately not here: what the owner's files hold (the broker serialises its own
//! state), and the table's format (`topics.rs`).

use std::cell::RefCell;

use bytes::Bytes;

use crate::config_file::ConfigFiles;
use crate::disk::{read_exact, Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::config_dir;
use crate::topics::{FlushMode, TopicConfig, TopicTable, TOPICS_FILE};

use super::{Inner, Store};

/// The topic table and the saves of `config/` files.
pub(super) struct ConfigState {
    topics: RefCell<TopicTable>,
    /// Orders the saves of `config/` files: one at a time per file, newest snapshot wins.
    files: ConfigFiles,
}

impl ConfigState {
    /// The state of a store whose saved topic table is `topics`.
    pub(super) fn new(topics: TopicTable) -> Self {
        ConfigState { topics: RefCell::new(topics), files: ConfigFiles::default() }
    }
}

impl<D: Disk> Store<D> {
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.inner.config_state.topics.borrow().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicConfig> {
        self.inner.config_state.topics.borrow().iter().cloned().collect()
    }

    /// Creates or replaces a topic's configuration (its flush mode applies to the next
    /// append) and persists the table.
    pub async fn upsert_topic(&self, config: TopicConfig) -> Result<()> {
        if config.name.is_empty() {
            return Err(StorageError::InvalidArgument("topic name is empty".into()));
        }
        self.inner.config_state.topics.borrow_mut().upsert(config);
        self.inner.save_topics().await
    }

    /// Removes a topic's configuration. Its stored records stay until retention; its
    /// ConsumeQueues stay readable by offset.
    pub async fn remove_topic(&self, name: &str) -> Result<Option<TopicConfig>> {
        let removed = self.inner.config_state.topics.borrow_mut().remove(name);
        self.inner.save_topics().await?;
        Ok(removed)
    }

    /// Whether the topic table in memory has changes `config/topics.json` does not hold
    /// yet: a save is under way, or the last one failed (the maintenance task and the
    /// next topic change try again; [`Store::persist_topics`] does now).
    pub fn topics_unsaved(&self) -> bool {
        self.inner.topics_unsaved()
    }

    /// Saves the topic table if it has unsaved changes (see [`Store::topics_unsaved`]).
    pub async fn persist_topics(&self) -> Result<()> {
        if self.topics_unsaved() {
            self.inner.save_topics().await?;
        }
        Ok(())
    }

    /// Replaces `config/<name>` atomically (old or new contents survive any crash):
    /// for the broker's own small state files (consumer offsets, delay progress). Saves
    /// of one file are serialised and the newest call's bytes win (`config_file.rs`); a
    /// failed attempt is retried before the error is returned.
    pub async fn save_config_file(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let dir = config_dir(&self.inner.config.dir);
        self.inner.config_state.files.save(&self.inner.disk, &dir, name, bytes).await
    }

    /// Reads `config/<name>`, or `None` when it was never saved.
    pub async fn load_config_file(&self, name: &str) -> Result<Option<Bytes>> {
        let path = config_dir(&self.inner.config.dir).join(name);
        if !self.inner.disk.exists(&path).await {
            return Ok(None);
        }
        let disk = &self.inner.disk;
        let file = disk.open(&path, OpenMode::Existing).await.map_err(|e| StorageError::io("open", &path, 0, e))?;
        let len = file.size().await.map_err(|e| StorageError::io("stat", &path, 0, e))?;
        let bytes =
            read_exact(&file, 0, len as usize, false).await.map_err(|e| StorageError::io("read", &path, 0, e))?;
        Ok(Some(bytes))
    }

    pub fn flush_mode(&self, topic: &str) -> FlushMode {
        self.inner.config_state.topics.borrow().get(topic).map_or(self.inner.config.default_flush, |t| t.flush)
    }
}

impl<D: Disk> Inner<D> {
    /// Saves a snapshot of the topic table, taken now (see `config_file.rs`).
    pub(super) async fn save_topics(&self) -> Result<()> {
        let json = self.config_state.topics.borrow().to_json();
        self.config_state.files.save(&self.disk, &config_dir(&self.config.dir), TOPICS_FILE, json).await
    }

    /// Whether the topic table has changes its file does not hold yet.
    pub(super) fn topics_unsaved(&self) -> bool {
        self.config_state.files.unsaved(TOPICS_FILE)
    }
}
