//! The broker: one shard per core, each owning its store, consumer groups, offsets,
//! queue locks, long-polling waiters, delayed deliveries and Raft replica, registered
//! with the NameServers as a broker of its own (`<name>-s<shard>`).
//!
//! # Layers
//!
//! ```text
//!   start ─────────────────────────────► everything below (the process: executors,
//!     │                                    start gate, listeners, shutdown order)
//!   dispatch ──► handlers ──┐           tasks ──┐
//!   (code table,  (decode,  │  (registration,   │
//!    leader rule,  call ops, │   delayed delivery,│
//!    oneway rule)  answer)   │   housekeeping,    │
//!                            ▼   replication)     ▼
//!                           ops  ◄────────────────┘  (Shard, private fields: the only
//!                            │                        writers of shard state)
//!                            ▼
//!                          state   (pure tables and rules: no shard, connection,
//!                                   store, task, clock or await)
//! ```
//!
//! - `state/`: groups, offsets, locks, pull waiters, delay progress, and the pure rules
//!   (tag filters, topic names and system topics, retries and transaction halves).
//! - `ops/`: the [`ops::Shard`] and its operations — appends, topic changes on every
//!   shard, offset commits, groups and locks, long polling, delayed delivery, Raft
//!   proposals and what the group commits, and the reads the layers above may make.
//! - `handlers/`: one file per concern; decode a request, call operations, answer. The
//!   one mapping from internal errors to RocketMQ response codes is `handlers::answer`.
//! - `tasks/`: background tasks; they decide when work runs and call operations.
//! - `dispatch`: [`dispatch::COMMAND_TABLE`] states once per request code its handler,
//!   its name, whether it needs the leader and whether it is replicated.
//!
//! # Rules, and where they are checked
//!
//! 1. Imports go down only: `handlers → ops → state`, `tasks → ops → state`; `dispatch`
//!    and `start` sit on top. Nothing in `state` imports `ops`, `handlers` or `tasks`;
//!    nothing in `ops` imports `handlers` or `tasks`; `handlers` and `tasks` do not
//!    import each other. Checked by `broker::tests::layers_import_only_downward`, which
//!    reads the sources.
//! 2. Only operations write shard state: `Shard`'s fields are private to `ops`, so the
//!    compiler refuses a handler or a task that reaches into one.
//! 3. No `RefCell` borrow of shard state is held across an `.await` (another task of the
//!    shard would panic on it, or see state half changed). Every table is held in a
//!    [`state::StateCell`], which lends it only to synchronous closures, and `state`'s
//!    methods are synchronous (also checked by the layering test); for every other
//!    `RefCell` of the crate, clippy's `await_holding_refcell_ref` is denied (`lib.rs`).
//! 4. A shard's state is touched only on its own executor; other shards send it owned
//!    `control` messages (topic changes).
//!
//! # Threads
//!
//! `run` (in `start`) is called on the main thread; each shard runs on a glommio
//! executor of its own, pinned to a core when configured, plus one for the embedded
//! NameServer. See `start` for the start-up and shutdown order and the `ready:` line.
//!
//! Deliberately not here: the remoting server and client (`crate::remoting`), the store
//! (`rockshard_storage`), Raft itself (`rockshard_raft`) and the wire formats
//! (`rockshard_net`).

pub mod dispatch;
pub mod handlers;
pub mod ops;
mod start;
pub mod state;
pub mod tasks;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

pub use start::run;

/// Wall-clock milliseconds, as RocketMQ timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
