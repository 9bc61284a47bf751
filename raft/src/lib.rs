//! Replication per shard (DLedger-style, issue 5): shard i of every node in a broker
//! group forms Raft group i. raft-rs is the consensus state machine; this crate is the
//! log storage, the driver and the wire format around it, on glommio.
//!
//! The Raft log *is* the CommitLog: an entry's data is a batch of stored-format records,
//! persisted by `Store::append_replicated` on every node (leader included); the Raft
//! index (`index.rs`) maps each entry to its CommitLog range, and a small hard-state file
//! (`hard_state.rs`) keeps term, vote, commit and voters. Readers see only applied
//! (committed) records, through the store's visible limit.
//!
//! Layout: `core.rs` (raft-rs `RawNode` and proposal bookkeeping, synchronous),
//! `log.rs` (raft-rs `Storage`: terms, spans, entry cache, async fetch), `replica.rs`
//! (the glommio tasks: driver, persister, completer, fetcher, ticker), `data.rs` (the
//! data-side trait and its in-memory implementation), `store_data.rs` (the store
//! implementation), `wire.rs` (message batches for one frame).
//!
//! Thread: a replica lives on its shard's executor; nothing here is `Send`.
//! Not here (gaps of this issue): membership changes, log compaction and snapshots
//! (the first index stays 1, retention is off in replicated mode), leader transfer.

pub mod core;
pub mod data;
pub mod error;
pub mod hard_state;
pub mod index;
pub mod limits;
pub mod log;
pub mod replica;
pub mod store_data;
pub mod wire;

pub use crate::core::{PeerProgress, Role, Status};
pub use data::{LogData, MemLog};
pub use error::{Error, Result};
pub use replica::{Clock, Hooks, Proposal, Replica, ReplicaConfig, Transport};
pub use store_data::StoreData;

/// raft-rs's message type, as the broker's transport carries it.
pub use raft::eraftpb::Message;

#[cfg(test)]
mod test_util {
    /// Runs a future on a fresh glommio executor (the disk and replica code needs one).
    pub fn run<G, F, T>(make: G) -> T
    where
        G: FnOnce() -> F + Send + 'static,
        F: std::future::Future<Output = T> + 'static,
        T: Send + 'static,
    {
        glommio::LocalExecutorBuilder::default().spawn(make).expect("executor").join().expect("join")
    }
}
