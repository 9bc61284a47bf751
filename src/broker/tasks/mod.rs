//! The top layer of the broker, beside the request handlers: a shard's background
//! tasks. They decide when work runs; what the work does is the shard's operations.
//!
//! Files: `register` (NameServer registration and its heartbeat), `schedule` (delayed
//! delivery), `housekeeping` (client expiry and lock sweeps, offset saves, waking pulls
//! at shutdown), `control` (topic changes from other shards), `replication` (snapshots,
//! leader placement, the hand-over at shutdown) and `raft_links` (the Raft transport's
//! sender tasks).
//!
//! Invariants: a task reaches shard state only through `ops` and imports `ops` and
//! `state`, never `handlers`; every task ends when the shard's shutdown signal fires
//! (the hand-over task is the one that fires it, after a leader stepped down).
//!
//! Runs on the shard's executor. Deliberately not here: answering requests (`handlers`)
//! and starting the shard itself (`start`).

pub mod control;
pub mod housekeeping;
pub mod raft_links;
pub mod register;
pub mod replication;
pub mod schedule;

use std::rc::Rc;

use crate::broker::ops::Shard;

/// Starts the shard's background work: long-polling wake-ups, client expiry, offset
/// persistence, delayed delivery, cross-shard control.
pub fn start(shard: &Rc<Shard>) {
    shard.listen_for_arrivals();
    housekeeping::start_pull_wakeup(shard);
    housekeeping::start_client_expiry(shard);
    housekeeping::start_offset_saves(shard);
    schedule::start(shard);
    control::start(shard);
}
