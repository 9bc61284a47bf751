//! The one error type of the `rockshard` crate.
//!
//! RocketMQ response codes are not errors of this crate: handlers answer them on the
//! wire (see `rockshard_net::code::response`). This enum is for what goes wrong on our
//! side of a socket or a file: I/O with the address or path involved, a peer that
//! answered with a failure code, bad configuration naming its key, a data directory
//! another process owns.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {target}: {source}")]
    Io { op: &'static str, target: String, source: io::Error },
    #[error("protocol error from {peer}: {source}")]
    Protocol { peer: String, source: rockshard_net::Error },
    #[error(transparent)]
    Storage(#[from] rockshard_storage::StorageError),
    #[error("config `{key}`: {detail}")]
    Config { key: String, detail: String },
    #[error("request code {code} to {peer} got no answer within {timeout_ms} ms")]
    Timeout { peer: String, code: i32, timeout_ms: u64 },
    #[error("connection to {peer} is closed")]
    Closed { peer: String },
    #[error("{peer} answered code {code}: {remark}")]
    Remote { peer: String, code: i32, remark: String },
    #[error("{0}")]
    Usage(String),
    /// A topic change that some shards did not apply (after retries) while the others
    /// did: `missing` names them and why. Applying is idempotent, so sending the same
    /// request again finishes it.
    #[error("{change} is not applied on every shard, missing on {missing}; sending the request again finishes it")]
    NotOnEveryShard { change: String, missing: String },
    /// Another process owns the data directory (see `dir_lock`): a broker, or `store
    /// inspect` while it reads. Apache RocketMQ's words for it end the message.
    #[error(
        "data directory {} is locked by {holder} (lock file {}): Lock failed, MQ already started",
        dir.display(),
        lock_file.display()
    )]
    DirLocked { dir: PathBuf, lock_file: PathBuf, holder: crate::dir_lock::Holder },
    /// The replicated group did not take a write: not the leader, not committed in time.
    #[error(transparent)]
    Replication(#[from] rockshard_raft::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Adapter for `map_err`: an I/O error of `op` against `target` (an address or path).
    pub fn io(op: &'static str, target: impl ToString) -> impl FnOnce(io::Error) -> Error {
        let target = target.to_string();
        move |source| Error::Io { op, target, source }
    }
}
