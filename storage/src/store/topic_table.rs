//! The topic table and the owner's `config/` files: lookups, changes and their saves.

use bytes::Bytes;

use crate::disk::{read_exact, Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::config_dir;
use crate::topics::{FlushMode, TopicConfig, TOPICS_FILE};

use super::{Inner, Store};

impl<D: Disk> Store<D> {
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.inner.topics.borrow().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicConfig> {
        self.inner.topics.borrow().iter().cloned().collect()
    }

    /// Creates or replaces a topic's configuration (its flush mode applies to the next
    /// append) and persists the table.
    pub async fn upsert_topic(&self, config: TopicConfig) -> Result<()> {
        if config.name.is_empty() {
            return Err(StorageError::InvalidArgument("topic name is empty".into()));
        }
        self.inner.topics.borrow_mut().upsert(config);
        self.save_topics().await
    }

    /// Removes a topic's configuration. Its stored records stay until retention; its
    /// ConsumeQueues stay readable by offset.
    pub async fn remove_topic(&self, name: &str) -> Result<Option<TopicConfig>> {
        let removed = self.inner.topics.borrow_mut().remove(name);
        self.save_topics().await?;
        Ok(removed)
    }

    pub(super) async fn save_topics(&self) -> Result<()> {
        self.inner.save_topics().await
    }

    /// Whether the topic table in memory has changes `config/topics.json` does not hold
    /// yet: a save is under way, or the last one failed (the maintenance task and the
    /// next topic change try again; [`Store::persist_topics`] does now).
    pub fn topics_unsaved(&self) -> bool {
        self.inner.config_files.unsaved(TOPICS_FILE)
    }

    /// Saves the topic table if it has unsaved changes (see [`Store::topics_unsaved`]).
    pub async fn persist_topics(&self) -> Result<()> {
        if self.topics_unsaved() {
            self.save_topics().await?;
        }
        Ok(())
    }

    /// Replaces `config/<name>` atomically (old or new contents survive any crash):
    /// for the broker's own small state files (consumer offsets, delay progress). Saves
    /// of one file are serialised and the newest call's bytes win (`config_file.rs`); a
    /// failed attempt is retried before the error is returned.
    pub async fn save_config_file(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let dir = config_dir(&self.inner.config.dir);
        self.inner.config_files.save(&self.inner.disk, &dir, name, bytes).await
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
        self.inner.topics.borrow().get(topic).map_or(self.inner.config.default_flush, |t| t.flush)
    }
}

impl<D: Disk> Inner<D> {
    /// Saves a snapshot of the topic table, taken now (see `config_file.rs`).
    pub(super) async fn save_topics(&self) -> Result<()> {
        let json = self.topics.borrow().to_json();
        self.config_files.save(&self.disk, &config_dir(&self.config.dir), TOPICS_FILE, json).await
    }
}
