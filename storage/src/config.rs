//! The configuration of one store: where its directory is, how big its files are, how
//! often its background tasks run, its retention, and the owner's [`TagCodeRule`].
//!
//! Its own module because both the store and recovery (and `store inspect`) take it:
//! recovery needs the segment size, the ConsumeQueue file size and the tag-code rule to
//! read a directory the way the store wrote it, and must not depend on the store to get
//! them.
//!
//! Invariant: a config that passed [`StoreConfig::validate`] has a segment size of at
//! least [`SEGMENT_SIZE_MIN_BYTES`] and no zero interval (a zero interval would make a
//! background task spin). Plain data; any thread may build one, the store that opens
//! with it keeps it for its life. Deliberately not here: per-topic settings (the topic
//! table, `topics.rs`) and anything the broker alone reads.

use std::path::PathBuf;

use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::record::{plain_tag_code, TagCodeRule};
use crate::topics::FlushMode;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The shard's data directory.
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    pub cq_file_entries: u64,
    pub flush_interval_ms: u64,
    pub flush_dirty_bytes: u64,
    pub sync_flush_timeout_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub hot_window_bytes: u64,
    /// Segments whose last write is older than this are deleted; 0 keeps them forever.
    pub retention_hours: u64,
    /// The CommitLog is kept below this many bytes by deleting its oldest segments.
    pub retention_bytes: Option<u64>,
    pub retention_check_interval_ms: u64,
    /// The flush mode of topics the topic table does not know.
    pub default_flush: FlushMode,
    /// A failure that repeats (every append on a full disk) is logged in full once, then
    /// as a count at most this often; 0 logs every occurrence (see `logs.rs`).
    pub log_repeat_interval_ms: u64,
    /// Decides the ConsumeQueue tag code of each record, at append and again at
    /// recovery (see [`TagCodeRule`]); [`plain_tag_code`] (the tag hash) by default. A
    /// store must be opened with the rule its records were appended under, or recovery
    /// rebuilds different codes.
    pub tag_code_rule: TagCodeRule,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            segment_size_bytes: SEGMENT_SIZE_DEFAULT_BYTES,
            cq_file_entries: CONSUME_QUEUE_FILE_ENTRIES_DEFAULT,
            flush_interval_ms: FLUSH_INTERVAL_DEFAULT_MS,
            flush_dirty_bytes: FLUSH_DIRTY_DEFAULT_BYTES,
            sync_flush_timeout_ms: SYNC_FLUSH_TIMEOUT_DEFAULT_MS,
            checkpoint_interval_ms: CHECKPOINT_INTERVAL_DEFAULT_MS,
            hot_window_bytes: HOT_WINDOW_DEFAULT_BYTES,
            retention_hours: RETENTION_DEFAULT_HOURS,
            retention_bytes: None,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_DEFAULT_MS,
            default_flush: FlushMode::Async,
            log_repeat_interval_ms: LOG_REPEAT_INTERVAL_MS,
            tag_code_rule: plain_tag_code,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |key, detail: String| Err(StorageError::Config { key, detail });
        if self.segment_size_bytes < SEGMENT_SIZE_MIN_BYTES {
            return bad("segment_size_bytes", format!("must be at least {SEGMENT_SIZE_MIN_BYTES}"));
        }
        if self.cq_file_entries == 0 {
            return bad("cq_file_entries", "must be at least 1".into());
        }
        for (key, v) in [
            ("flush_interval_ms", self.flush_interval_ms),
            ("sync_flush_timeout_ms", self.sync_flush_timeout_ms),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("retention_check_interval_ms", self.retention_check_interval_ms),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        Ok(())
    }
}
