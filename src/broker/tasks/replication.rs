//! A replicated shard's background tasks: the leader's snapshots of consumer offsets and
//! delayed-delivery progress for its followers, leader placement (the shard's preferred
//! node campaigns at start, and with `raft_balance_leaders` leadership moves back to it
//! when it is caught up), and handing leadership over before the shard stops.
//!
//! Snapshots: at most every `META_REPLICATION_INTERVAL_MS`, and only when the offsets or
//! the delay progress changed since the last snapshot that committed; a snapshot that
//! did not commit is proposed again at the next interval.
//!
//! Runs on the shard's executor; calls operations only (`ops::replication`).
//! Deliberately not here: what a snapshot holds and how followers apply it, and the
//! transport (`tasks::raft_links`).

use std::rc::Rc;
use std::time::Duration;

use rockshard_raft::Role;
use tracing::{debug, info, warn};

use crate::broker::ops::replication::furthest_follower;
use crate::broker::ops::Shard;
use crate::limits::{
    LEADER_BALANCE_INTERVAL_MS, LEADER_BALANCE_LAG_MAX, LEADER_PLACEMENT_START_TRIES, META_REPLICATION_INTERVAL_MS,
};
use rockshard_local::Signal;

/// Starts the replicated shard's snapshot and leader-placement tasks.
pub fn start(shard: &Rc<Shard>) {
    start_meta_task(shard);
    start_leader_placement(shard);
}

/// The leader's offset snapshots: every interval, when the table changed since the last
/// one that committed.
fn start_meta_task(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let mut replicated_version = shard.offsets_version();
        let mut replicated_delay = shard.delay_offsets();
        loop {
            let stop = shard.shutdown().sleep(Duration::from_millis(META_REPLICATION_INTERVAL_MS)).await;
            if stop {
                break;
            }
            if !shard.is_replicated() {
                break;
            }
            let version = shard.offsets_version();
            let delay = shard.delay_offsets();
            if !shard.is_leader() || (version == replicated_version && delay == replicated_delay) {
                continue;
            }
            let Some(proposal) =
                shard.propose_snapshot(version != replicated_version, (delay != replicated_delay).then_some(delay))
            else {
                break;
            };
            match proposal {
                Ok(p) => match p.await {
                    Ok(_) => (replicated_version, replicated_delay) = (version, delay),
                    Err(e) => debug!(shard = shard.id(), error = %e, "offset snapshot not committed; will retry"),
                },
                Err(e) => debug!(shard = shard.id(), error = %e, "offset snapshot not proposed"),
            }
        }
    })
    .detach();
}

/// Spreads leadership: the shard's preferred node (see `Replication::preferred_leader`)
/// campaigns at start while the group has no leader, so that with several shards every
/// node leads some and takes writes; with `raft_balance_leaders`, a leader that is not
/// the preferred node hands over to it whenever that node is caught up.
fn start_leader_placement(shard: &Rc<Shard>) {
    let Some(repl) = shard.config().replication.clone() else { return };
    let preferred = repl.preferred_leader(shard.id());
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let tick = Duration::from_millis(repl.tick_ms);
        // At start: a few tries, each a couple of ticks apart, while nobody leads.
        if preferred == repl.node_id {
            for _ in 0..LEADER_PLACEMENT_START_TRIES {
                let Some(status) = shard.raft_status() else { return };
                if shard.shutdown().is_set() || status.leader.is_some() {
                    break;
                }
                shard.raft_campaign();
                glommio::timer::sleep(tick * 3).await;
            }
        }
        if !repl.balance_leaders {
            return;
        }
        while !shard.shutdown().is_set() {
            let stop = shard.shutdown().sleep(Duration::from_millis(LEADER_BALANCE_INTERVAL_MS)).await;
            if stop {
                break;
            }
            let Some(st) = shard.raft_status() else { break };
            if st.role != Role::Leader || preferred == repl.node_id {
                continue;
            }
            let caught_up = st.progress.iter().any(|p| {
                p.id == preferred && p.state == "replicate" && p.matched + LEADER_BALANCE_LAG_MAX >= st.last_index
            });
            if caught_up {
                info!(shard = shard.id(), to = preferred, "handing leadership to the preferred node");
                shard.raft_transfer_leader(preferred);
            }
        }
    })
    .detach();
}

/// Triggers `shutdown` once `requested` fires — after, for a replicated leader, handing
/// its leadership to the follower furthest along, so that a rolling restart costs each
/// shard a transfer (a few milliseconds) instead of an election timeout (1–2 s). The
/// hand-over waits at most one election timeout: raft-rs abandons a transfer to a
/// follower that does not catch up in that time, and the group then elects as usual.
pub fn hand_over_then(shard: &Rc<Shard>, requested: Rc<Signal>, shutdown: Rc<Signal>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        requested.wait().await;
        if let (Some(st), Some(repl)) = (shard.raft_status(), shard.config().replication.as_ref()) {
            if let (Role::Leader, Some(to)) = (st.role, furthest_follower(&st)) {
                info!(shard = shard.id(), to, "stopping: handing leadership over first");
                shard.raft_transfer_leader(to);
                let tick = Duration::from_millis(repl.tick_ms);
                for _ in 0..repl.election_ticks {
                    glommio::timer::sleep(tick).await;
                    if !shard.is_leader() {
                        break;
                    }
                }
                if shard.is_leader() {
                    warn!(shard = shard.id(), to, "leadership not handed over in time; stopping as leader");
                }
            }
        }
        shutdown.trigger();
    })
    .detach();
}
