//! Topic configuration the store needs: queue counts, permissions and the flush mode,
//! persisted in `config/topics.json` and changeable at run time.
//!
//! Saves are atomic: write a temporary file, fdatasync it, rename it over the old one,
//! sync the directory (`config_file.rs` does the saving). A crash leaves either the old
//! table or the new one, never a torn mix. The table is owned by one shard's store; the
//! broker keeps the shards' tables in step by sending each shard its own copy of a
//! change. [`load_topics`] reads the file back, through a read-only file, for the
//! store's open and for `store inspect`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::disk::{read_exact, Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout;

/// The topic table's file under `config/`.
pub const TOPICS_FILE: &str = "topics.json";

/// When an append to a topic is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// Once the record is in the page cache; a background task flushes it within the
    /// flush interval. A power loss may lose the last interval's acknowledged records.
    #[default]
    Async,
    /// Once an fdatasync covering the record has completed (group-committed).
    Sync,
}

impl FlushMode {
    pub const ALLOWED: &'static str = "`sync` or `async`";
}

impl FromStr for FlushMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "async" => Ok(FlushMode::Async),
            "sync" => Ok(FlushMode::Sync),
            other => Err(format!("unknown flush mode `{other}`: expected {}", FlushMode::ALLOWED)),
        }
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushMode::Async => "async",
            FlushMode::Sync => "sync",
        })
    }
}

/// RocketMQ permission bits (`PermName`).
pub mod perm {
    pub const INHERIT: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const READ: u32 = 4;
    pub const READ_WRITE: u32 = READ | WRITE;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: u32,
    pub flush: FlushMode,
    #[serde(default)]
    pub order: bool,
    #[serde(default)]
    pub sys_flag: u32,
}

impl TopicConfig {
    pub fn new(name: impl Into<String>, queues: u32, flush: FlushMode) -> Self {
        TopicConfig {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: perm::READ_WRITE,
            flush,
            order: false,
            sys_flag: 0,
        }
    }
}

/// The persisted form of the table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TopicFile {
    pub version: u32,
    pub topics: Vec<TopicConfig>,
}

#[derive(Debug, Default, Clone)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicConfig>,
}

impl TopicTable {
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let file: TopicFile = serde_json::from_slice(bytes)?;
        Ok(TopicTable { topics: file.topics.into_iter().map(|t| (t.name.clone(), t)).collect() })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let file = TopicFile { version: 1, topics: self.topics.values().cloned().collect() };
        serde_json::to_vec_pretty(&file).expect("topic configs always serialize")
    }

    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    pub fn upsert(&mut self, config: TopicConfig) {
        self.topics.insert(config.name.clone(), config);
    }

    pub fn remove(&mut self, name: &str) -> Option<TopicConfig> {
        self.topics.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TopicConfig> {
        self.topics.values()
    }
}

/// The topic table in `root`, empty when none was saved. Read through a read-only file:
/// `store inspect` uses this too.
pub async fn load_topics<D: Disk>(disk: &D, root: &Path) -> Result<TopicTable> {
    let path = layout::config_dir(root).join(TOPICS_FILE);
    if !disk.exists(&path).await {
        return Ok(TopicTable::default());
    }
    let file = disk.open(&path, OpenMode::ReadOnly).await.map_err(|e| StorageError::io("open", &path, 0, e))?;
    let len = file.size().await.map_err(|e| StorageError::io("stat", &path, 0, e))?;
    let bytes = read_exact(&file, 0, len as usize, false).await.map_err(|e| StorageError::io("read", &path, 0, e))?;
    TopicTable::from_json(&bytes).map_err(|e| StorageError::Corrupt { path, offset: 0, detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_mode_parses_and_names_the_allowed_values() {
        assert_eq!("SYNC".parse::<FlushMode>(), Ok(FlushMode::Sync));
        assert_eq!("async".parse::<FlushMode>(), Ok(FlushMode::Async));
        let err = "fast".parse::<FlushMode>().unwrap_err();
        assert!(err.contains("`sync` or `async`"), "{err}");
    }

    #[test]
    fn table_round_trips_through_json() {
        let mut t = TopicTable::default();
        t.upsert(TopicConfig::new("A", 4, FlushMode::Sync));
        t.upsert(TopicConfig::new("B", 8, FlushMode::Async));
        let back = TopicTable::from_json(&t.to_json()).unwrap();
        assert_eq!(back.get("A").unwrap().flush, FlushMode::Sync);
        assert_eq!(back.get("B").unwrap().write_queues, 8);
        assert!(String::from_utf8(t.to_json()).unwrap().contains("\"flush\": \"sync\""));
    }
}
