//! The one error type of the raft crate.
//!
//! Variants carry what was being done and where (operation, path, offset, index), so a
//! log line says which file or entry to look at. `Clone` because one failure (a
//! persist that failed, a replica that stopped) is reported to every waiting proposal.
//! Mapping to RocketMQ response codes is the broker's job.
//!
//! Thread: none of its own; values move between tasks of one shard.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rockshard_storage::StorageError;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum Error {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },

    /// The proposal will not be applied as proposed: leadership was lost, its entry was
    /// replaced by another leader's, or raft-rs refused it.
    #[error("proposal dropped: {0}")]
    Dropped(&'static str),

    /// The proposal was not applied within the configured timeout. It may still be
    /// applied later: the caller must treat the outcome as unknown, never as success.
    #[error("proposal not applied within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },

    /// Too many proposals wait already; the caller should back off.
    #[error("{pending} proposals pending (limit {limit})")]
    Busy { pending: usize, limit: usize },

    /// The replica is closed, or stopped after a failure it cannot continue from.
    #[error("replica stopped: {0}")]
    Stopped(Arc<str>),

    /// The CommitLog side of the log failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),

    /// An I/O error on a raft file (index, hard state).
    #[error("{op} {path} at offset {offset}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: Arc<io::Error>,
    },

    /// A raft file whose contents cannot be right.
    #[error("corrupt {path} at offset {offset}: {detail}")]
    Corrupt { path: PathBuf, offset: u64, detail: String },

    /// Entry data or a wire frame that does not decode.
    #[error("bad {what}: {detail}")]
    Decode { what: &'static str, detail: String },

    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(Arc<raft::Error>),

    /// A configuration that cannot work (ids, voters, limits).
    #[error("bad replica config `{key}`: {detail}")]
    Config { key: &'static str, detail: String },
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, offset: u64, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), offset, source: Arc::new(source) }
    }

    /// A `map_err` adapter for raft-file I/O.
    pub fn at(op: &'static str, path: &std::path::Path, offset: u64) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_path_buf();
        move |e| Error::io(op, path, offset, e)
    }

    pub fn decode(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Decode { what, detail: detail.into() }
    }

    /// Whether retrying the same operation later may succeed (the store is busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Storage(StorageError::Busy { .. }))
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Self {
        Error::Raft(Arc::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
