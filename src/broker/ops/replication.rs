//! A shard's part in its replicated broker group, as operations: joining the group
//! (the replica over the shard's own store), proposing records and metadata, applying
//! what the group committed, and what the rest of the broker may ask or tell the
//! replica (status, role, Raft messages, leadership moves).
//!
//! Metadata: a record on `META_TOPIC` (queue 0) whose body is a [`MetaRecord`] in JSON,
//! always in an entry of its own (never gathered with sends), so applying an entry looks
//! at its first record only. Topic changes are proposed by the node that made them (a
//! follower's proposal is forwarded to the leader by raft-rs) and applied on every node
//! when committed; consumer offsets and delayed-delivery progress are a snapshot the
//! leader proposes (`tasks::replication` decides when) and the followers apply.
//!
//! Records: a send's records are encoded once in the stored format
//! ([`encode_records`]) and proposed; every node's store appends them when committed.
//!
//! Invariants: the replica is set once, right after the shard opens, and lives inside
//! the shard, so its hooks hold the shard weakly; committed topic changes are applied
//! one after another in log order; a leader never adopts a snapshot (its own state is
//! newer than any it proposed).
//!
//! Runs on the shard's executor, like everything the shard owns. Deliberately not here:
//! the transport (`tasks::raft_links`), the periodic snapshot, leader placement and the
//! hand-over at shutdown (`tasks::replication`), and the wire codes of replication
//! failures (`handlers::answer`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use rockshard_net::rockshard::{ProgressView, StatusBody, StatusView, META_TOPIC};
use rockshard_net::stored::{self, RecordFields};
use rockshard_raft::{Hooks, Message, Proposal, ReplicaConfig, Role, Status, Transport};
use rockshard_storage::TopicConfig;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Shard;
use crate::broker::now_ms;
use crate::broker::state::delay::LEVELS;
use crate::broker::state::offsets::OffsetTable;
use crate::Result;

/// A shard's replica: Raft over the shard's own store.
pub type ShardReplica = rockshard_raft::Replica<rockshard_storage::GlommioDisk, rockshard_raft::StoreData>;

/// One metadata record's body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaRecord {
    /// Topics created or changed (whole configs, applied as they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics_upsert: Vec<TopicConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics_delete: Vec<String>,
    /// The leader's whole consumer offset table (consumerOffset.json's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<serde_json::Value>,
    /// The leader's delayed-delivery progress: the next offset of each delay level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_offsets: Option<Vec<u64>>,
}

/// The replica's status in the form RAFT_STATUS carries.
pub fn status_view(s: &Status) -> StatusView {
    StatusView {
        id: s.id,
        leader: s.leader,
        term: s.term,
        commit: s.commit,
        applied: s.applied,
        last_index: s.last_index,
        role: format!("{:?}", s.role).to_lowercase(),
        progress: s
            .progress
            .iter()
            .map(|p| ProgressView {
                id: p.id,
                matched: p.matched,
                next_idx: p.next_idx,
                state: p.state.to_string(),
                lag: s.last_index.saturating_sub(p.matched),
            })
            .collect(),
        stopped: s.stopped.clone(),
    }
}

impl Shard {
    /// Joins the shard's Raft group when the node is part of a replicated group: opens
    /// the replica over the shard's store (it reconciles its log with the CommitLog and
    /// makes only committed records readable), sending through `transport`.
    pub async fn open_replica(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        let Some(repl) = self.config.replication.as_ref() else { return Ok(()) };
        let hooks = Rc::new(ShardHooks::new(self));
        let mut config = ReplicaConfig::new(repl.node_id, repl.voters(), self.config.shard_dir(self.id).join("raft"));
        config.tick_ms = repl.tick_ms;
        config.election_ticks = repl.election_ticks as usize;
        config.propose_timeout_ms = repl.timeout_ms;
        let replica = ShardReplica::open_with(
            config,
            rockshard_raft::StoreData::new(Rc::new(self.store.clone())),
            rockshard_storage::GlommioDisk,
            transport,
            hooks,
            rockshard_raft::Clock::Timer,
        )
        .await?;
        let _ = self.replica.set(replica);
        Ok(())
    }

    /// Closes the replica, if there is one (at shutdown, before the store).
    pub async fn close_replica(&self) {
        if let Some(replica) = self.replica.get() {
            replica.close().await;
        }
    }

    /// Whether this shard is part of a replicated group (its replica is open).
    pub fn is_replicated(&self) -> bool {
        self.replica.get().is_some()
    }

    /// The replica's status, when there is a replica.
    pub fn raft_status(&self) -> Option<Status> {
        self.replica.get().map(|r| r.status())
    }

    /// Why a leader-only request is refused here: "not the leader", naming the leader this
    /// node knows of — the same error a proposal on a follower fails with. `None` when
    /// this shard takes writes (alone, or as its group's leader), and when its replica
    /// stopped: then the request goes on and its proposal reports why the replica stopped,
    /// as it always has.
    pub fn not_leader(&self) -> Option<rockshard_raft::Error> {
        let replica = self.replica.get().filter(|r| !r.is_leader())?;
        let status = replica.status();
        status.stopped.is_none().then_some(rockshard_raft::Error::NotLeader { leader: status.leader })
    }

    /// RAFT_STATUS's body: the replica's view plus who the nodes are; `None` when this
    /// broker is not part of a replicated group.
    pub fn raft_status_body(&self) -> Option<StatusBody> {
        let (Some(replica), Some(repl)) = (self.replica.get(), self.config.replication.as_ref()) else { return None };
        Some(StatusBody {
            group: repl.group.clone(),
            broker_name: self.broker_name.clone(),
            shard: self.id,
            node: repl.node.clone(),
            node_id: repl.node_id,
            peers: repl.peers.iter().map(|(n, _)| n.clone()).collect(),
            status: status_view(&replica.status()),
        })
    }

    /// Hands Raft messages from a peer to the replica; false when there is no replica.
    pub fn step_raft(&self, msgs: Vec<Message>) -> bool {
        let Some(replica) = self.replica.get() else { return false };
        for m in msgs {
            replica.step(m);
        }
        true
    }

    /// Campaigns for leadership now (leader placement at start).
    pub fn raft_campaign(&self) {
        if let Some(replica) = self.replica.get() {
            replica.campaign();
        }
    }

    /// Hands leadership to node `to` (placement, or stopping as leader).
    pub fn raft_transfer_leader(&self, to: u64) {
        if let Some(replica) = self.replica.get() {
            replica.transfer_leader(to);
        }
    }

    /// Replicates a topic change this shard just made (no-op without replication). A
    /// follower's proposal is forwarded to the leader; everyone applies it when it
    /// commits.
    pub(super) fn replicate_topic_change(&self, upsert: Option<TopicConfig>, delete: Option<&str>) {
        let Some(replica) = self.replica.get() else { return };
        let meta = MetaRecord {
            topics_upsert: upsert.into_iter().collect(),
            topics_delete: delete.map(str::to_string).into_iter().collect(),
            ..Default::default()
        };
        if let Err(e) = replica.propose_forwarded(meta_record(self.store_host, &meta)) {
            warn!(shard = self.id, error = %e, "a topic change could not be replicated now");
        }
    }

    /// Proposes a snapshot of this leader's consumer offsets (when `offsets`) and
    /// delayed-delivery progress (when given), in an entry of its own. `None` without a
    /// replica.
    pub fn propose_snapshot(&self, offsets: bool, delay: Option<[u64; LEVELS]>) -> Option<Result<Proposal>> {
        let replica = self.replica.get()?;
        let mut meta = MetaRecord::default();
        if offsets {
            let table = serde_json::from_slice(&self.offsets_json()).expect("the offset table is JSON");
            meta.offsets = Some(table);
        }
        if let Some(delay) = delay {
            meta.delay_offsets = Some(delay.to_vec());
        }
        Some(replica.propose_alone(meta_record(self.store_host, &meta)).map_err(Into::into))
    }
}

// ---- hooks -------------------------------------------------------------------------------

/// What the replica tells the shard. Holds the shard weakly: the replica lives inside it.
pub struct ShardHooks {
    pub shard: RefCell<Weak<Shard>>,
    /// Committed topic changes not yet applied to the store, in log order: one task
    /// applies them one after another, so a create and a delete of the same topic that
    /// commit back to back land in that order too.
    topic_changes: Rc<RefCell<VecDeque<MetaRecord>>>,
    applying: Rc<Cell<bool>>,
}

impl ShardHooks {
    pub fn new(shard: &Rc<Shard>) -> ShardHooks {
        ShardHooks { shard: RefCell::new(Rc::downgrade(shard)), topic_changes: Rc::default(), applying: Rc::default() }
    }

    fn queue_topic_changes(&self, shard: &Rc<Shard>, meta: MetaRecord) {
        self.topic_changes.borrow_mut().push_back(meta);
        if self.applying.replace(true) {
            return;
        }
        let (shard, queue, applying) = (shard.clone(), self.topic_changes.clone(), self.applying.clone());
        glommio::spawn_local(async move {
            loop {
                let next = queue.borrow_mut().pop_front();
                let Some(meta) = next else { break };
                shard.apply_replicated_topics(meta.topics_upsert, meta.topics_delete).await;
            }
            applying.set(false);
        })
        .detach();
    }

    fn apply_meta(&self, shard: &Rc<Shard>, body: &[u8]) {
        let meta: MetaRecord = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                warn!(shard = shard.id, error = %e, "unreadable metadata record skipped");
                return;
            }
        };
        if !meta.topics_upsert.is_empty() || !meta.topics_delete.is_empty() {
            self.queue_topic_changes(shard, meta.clone());
        }
        if let Some(delay) = meta.delay_offsets.filter(|_| !shard.is_leader()) {
            match <[u64; LEVELS]>::try_from(delay) {
                Ok(levels) => {
                    shard.schedule.adopt(levels);
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        if let Err(e) = shard.persist_delay_progress().await {
                            warn!(shard = shard.id, error = %e, "saving replicated delay progress failed");
                        }
                    })
                    .detach();
                }
                Err(v) => {
                    warn!(shard = shard.id, levels = v.len(), "replicated delay progress of the wrong length skipped")
                }
            }
        }
        if let Some(offsets) = meta.offsets {
            // The leader's own table is newer than any snapshot it proposed.
            if !shard.is_leader() {
                match serde_json::to_vec(&offsets).map_err(|e| e.to_string()).and_then(|b| OffsetTable::from_json(&b)) {
                    Ok(table) => shard.replace_offsets(table),
                    Err(e) => warn!(shard = shard.id, error = %e, "unreadable replicated offsets skipped"),
                }
            }
        }
    }
}

impl Hooks for ShardHooks {
    fn applied(&self, _index: u64, data: &[u8]) {
        let Some(shard) = self.shard.borrow().upgrade() else { return };
        // Metadata records travel in entries of their own (`propose_alone`,
        // `propose_forwarded`): an entry whose first record is a message of another topic
        // holds none, and the sends' entries are not scanned record by record.
        let mut at = 0;
        while at < data.len() {
            let Ok(Some(stored::Record::Message(m))) = stored::decode(&data[at..]) else { break };
            if m.topic != META_TOPIC.as_bytes() {
                break;
            }
            self.apply_meta(&shard, m.body);
            at += (m.header.total_size as usize).max(1);
        }
    }

    fn role_changed(&self, status: &Status) {
        let Some(shard) = self.shard.borrow().upgrade() else { return };
        info!(
            shard = shard.id,
            leader = ?status.leader,
            term = status.term,
            "raft role changed; re-registering as {}",
            if status.role == Role::Leader { "master (brokerId 0)" } else { "slave" }
        );
        // NameServers hear of the new role at once (brokerId 0 = the leader).
        shard.topics_changed();
    }
}

// ---- encoding ----------------------------------------------------------------------------

/// The stored-format record carrying `meta`, stamped now.
fn meta_record(store_host: SocketAddr, meta: &MetaRecord) -> Bytes {
    let body = serde_json::to_vec(meta).expect("metadata serializes");
    let fields = RecordFields {
        topic: META_TOPIC.as_bytes(),
        queue_id: 0,
        flag: 0,
        sys_flag: 0,
        born_timestamp_ms: now_ms(),
        born_host: store_host,
        store_timestamp_ms: now_ms(),
        store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        properties: b"",
    };
    let mut out = Vec::with_capacity(body.len() + 128);
    stored::encode(&fields, 0, 0, &mut out).expect("a metadata record is always encodable");
    Bytes::from(out)
}

/// The follower a leader's status shows furthest along among those it is streaming to
/// (raft-rs "replicate" state): where to hand leadership or send a lagging reader.
pub fn furthest_follower(st: &Status) -> Option<u64> {
    st.progress.iter().filter(|p| p.state == "replicate").max_by_key(|p| p.matched).map(|p| p.id)
}

/// Encodes records for a proposal: the stored format with this moment as STORETIMESTAMP;
/// the offsets are placeholders every node fills in identically when it persists.
pub fn encode_records(fields: &[RecordFields<'_>]) -> Result<Bytes, rockshard_net::Error> {
    let now = now_ms();
    let mut len = 0;
    for f in fields {
        len += stored::encoded_len(f)?;
    }
    let mut out = Vec::with_capacity(len);
    for f in fields {
        stored::encode(&RecordFields { store_timestamp_ms: now, ..*f }, 0, 0, &mut out)?;
    }
    Ok(Bytes::from(out))
}
