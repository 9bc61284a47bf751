//! Rockshard's storage engine: one store per shard.
//!
//! Owns: the CommitLog (segment files of RocketMQ stored-message records), the
//! ConsumeQueues (20-byte index entries per MessageQueue), the per-topic flush mode, the
//! recovery checkpoint, retention, and the disk abstraction the store runs on.
//!
//! Modules:
//! - [`store`]: the [`Store`] of a shard, in parts with one job each (append, reads,
//!   cold reads, the writer, flusher, preparer and maintenance tasks, visibility,
//!   truncate); its header maps which part owns which state.
//! - [`config`]: [`StoreConfig`]; [`layout`]: where each file of a store directory lives.
//! - [`record`]: the rules a stored record keeps (valid topic, queue id, properties,
//!   dispatchable sys flag) and how its ConsumeQueue tag code is computed, under the
//!   owner's [`TagCodeRule`]; used by appends, recovery, `inspect` and the raft crate.
//! - [`recovery`] and [`inspect`](mod@inspect): opening a directory after any crash, repairing it or
//!   (for `store inspect`) only reading it. They use the config, the layout and the
//!   record rules, never the store.
//! - Formats and their state: [`commitlog`] (segments, pending chunks, positions),
//!   [`consume_queue`] (entries, one queue), [`checkpoint`], [`topics`] (the topic
//!   table), [`offset`] (a type per kind of offset).
//! - [`disk`]: the `Disk` trait and the real disk, [`GlommioDisk`]; [`read_cache`]: the
//!   caches of cold windows and ConsumeQueue blocks; [`limits`]; [`error`].
//! - `testing` (only for tests and with the `testing` feature): the power-losing disk
//!   simulator `SimDisk` and the fuzzing entry points; not part of the production API.
//!
//! Invariants:
//! - A record acknowledged for a `sync` topic is covered by a completed fdatasync before
//!   the acknowledgement, and survives any crash or power loss.
//! - CommitLog positions keep flushed ≤ written ≤ appended; checked in release builds.
//! - Recovery keeps every record before the first damaged one, serves nothing after it,
//!   and scans only what lies past the last checkpoint.
//! - [`inspect()`] reads what recovery would leave without changing a byte: every file it
//!   opens is opened read-only.
//! - A reader never sees a ConsumeQueue entry whose record is not yet written.
//! - `written` never passes a write that has not completed, nor one that failed; bytes
//!   that writes after a failure left past `written` are zeroed before the next write.
//! - Zeros written ahead of `sync` appends (the preparer) never land on bytes any append
//!   has reached, and no write starts in a range while zeros are going into it.
//! - Two stores fed the same records through `append_replicated` (same segment size)
//!   write byte-identical CommitLogs, BLANKs included: nothing but the records and their
//!   order decides a byte.
//! - With a visible limit, no reader sees a record that ends past min(limit, written);
//!   only visible ConsumeQueue entries reach the files, and the checkpoint never passes
//!   the visible end. The arrival listener hears of each record once it is visible.
//! - When `truncate(from)` returns, no record at or past `from` is readable, and none can
//!   come back: the checkpoint (lowered to at most `from`) and the zeroed CommitLog past
//!   `from` are durable first. A read that a truncate overlapped is read again (or fails
//!   with `Truncated`) rather than return cut bytes; a truncate that fails half way
//!   fences the store.
//!
//! Also here, because the store's retry loops need it and the broker builds on this
//! crate: the aggregation of repeated log lines (`logs`). The executor-local wake-ups
//! the store's tasks sleep on come from the `rockshard-local` crate.
//!
//! Threading: a store lives on one glommio executor (its shard) and is not `Send`.
//! Deliberately not here: the wire protocol beyond the record format (the `net` crate),
//! consumer offsets and topic routing policy (the broker), and any RocketMQ business
//! rule: no topic is known by name (the delay topic's tag codes are the broker's
//! `TagCodeRule`).

pub mod checkpoint;
pub mod commitlog;
pub mod config;
mod config_file;
pub mod consume_queue;
pub mod disk;
pub mod error;
pub mod inspect;
pub mod layout;
pub mod limits;
pub mod logs;
pub mod offset;
pub mod read_cache;
pub mod record;
pub mod recovery;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topics;

pub use config::StoreConfig;
pub use consume_queue::QueueInfo;
pub use disk::{Disk, DiskFile, GlommioDisk};
pub use error::{Result, StorageError};
pub use inspect::{inspect, Inspection};
pub use offset::{PhysicalOffset, QueueOffset};
pub use record::TagCodeRule;
pub use recovery::{RecoveryReport, ScanStop};
pub use store::{AppendResult, AppendWait, AppendedRecord, Boundary, GetResult, GetStatus, Store, StoreStats};
pub use topics::{FlushMode, TopicConfig};
