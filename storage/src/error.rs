//! The one error type of the storage crate.
//!
//! Every variant carries what was being done and where (operation, path, offset), so an
//! operator reading a log line knows which file to look at. Errors are `Clone` because a
//! failed write or flush must be reported to every append waiting on it. The mapping to
//! RocketMQ response codes (FLUSH_DISK_TIMEOUT, SERVICE_NOT_AVAILABLE, ...) is the
//! broker's job, not this crate's.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum StorageError {
    /// An operating-system I/O error, with the operation and the file it hit.
    #[error("{op} {path} at offset {offset}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: Arc<io::Error>,
    },

    /// A record that cannot be stored as given (too large, a property string too long).
    #[error("message rejected: {0}")]
    Message(#[from] rockshard_net::Error),

    /// A record larger than a segment can hold next to its BLANK filler.
    #[error("message of {size} bytes does not fit a CommitLog segment of {segment_size} bytes")]
    MessageTooLarge { size: usize, segment_size: u64 },

    /// An argument outside what the store accepts (a negative queue id, an empty topic).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The disk is not keeping up: too many bytes are waiting to be written.
    #[error("store busy: {pending_bytes} bytes waiting to be written (limit {limit_bytes})")]
    Busy { pending_bytes: usize, limit_bytes: usize },

    /// A `sync` append whose fdatasync did not complete in time. The record *was* written
    /// and may still become durable; it is simply not known to be yet.
    #[error("flush of offset {offset} did not complete within {timeout_ms} ms")]
    FlushTimeout { offset: u64, timeout_ms: u64 },

    /// An fdatasync failed. After a failed fsync the kernel may have dropped the dirty
    /// pages, so nothing written since the last good flush can be trusted durable; the
    /// store refuses further appends until it is reopened and recovers.
    #[error("store fenced after a failed flush, reopen to recover: {0}")]
    Fenced(Arc<StorageError>),

    /// Data on disk that recovery cannot make sense of and will not silently discard.
    #[error("corrupt store at {path} offset {offset}: {detail}")]
    Corrupt { path: PathBuf, offset: u64, detail: String },

    /// A configuration value outside what the store supports.
    #[error("bad storage config `{key}`: {detail}")]
    Config { key: &'static str, detail: String },

    /// The store is shutting down or shut down.
    #[error("store is closed")]
    Closed,

    /// A file under `config/` (the topic table, consumer offsets, delay progress) could
    /// not be saved in any of its attempts; the file keeps its previous contents.
    #[error("saving {path} failed after {attempts} attempts, its previous contents stay: {last}")]
    ConfigSave {
        path: PathBuf,
        attempts: u32,
        #[source]
        last: Arc<StorageError>,
    },

    /// The CommitLog was cut at `offset` ([`crate::Store::truncate`]) before this append
    /// was answered, or while this read ran, or an append came while a truncate ran.
    #[error("CommitLog truncated at offset {offset}")]
    Truncated { offset: u64 },
}

impl StorageError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, offset: u64, source: io::Error) -> Self {
        StorageError::Io { op, path: path.into(), offset, source: Arc::new(source) }
    }

    /// A `map_err` adapter: `file.sync_data().await.map_err(StorageError::at("fdatasync", path, 0))`.
    pub fn at(op: &'static str, path: &Path, offset: u64) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |e| StorageError::io(op, path, offset, e)
    }

    /// Whether this is (or was caused by) the disk being full, so the broker can say so.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            StorageError::Fenced(inner) => inner.is_disk_full(),
            StorageError::ConfigSave { last, .. } => last.is_disk_full(),
            _ => false,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
