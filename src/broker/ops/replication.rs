//! A shard's part in its replicated broker group: the Raft transport between shard *i* of
//! every node, the hooks the replica calls at apply and on role changes, the metadata
//! records (topic changes, consumer offsets) that ride in the log, and the status answer
//! `rockshard admin cluster` shows (`status_view`; the body's shape is net's).
//!
//! Transport: Raft messages travel as remoting frames with the oneway request code
//! `RAFT_MESSAGES` (net's `rockshard` module) on an ordinary connection from this shard to the peer's shard port
//! (base port + shard), one connection per peer, made again when it breaks. Every
//! message the replica hands over while a write is under way leaves in the next frame,
//! so a burst of appends and heartbeats to one peer is one write. A peer that cannot be
//! reached holds at most [`RAFT_PEER_QUEUE_MAX_MSGS`] messages; past that they are
//! dropped — Raft resends what matters, and a dead peer must not grow our memory.
//! A link going down is a WARN naming the peer, once per down transition, also on an
//! idle link (its connection closing is noticed without a message to send); its coming
//! back is an INFO. At start, a peer gets [`RAFT_LINK_START_GRACE_MS`] to come up.
//!
//! Metadata: a record on `META_TOPIC` (queue 0) whose body is a [`MetaRecord`] in JSON,
//! always in an entry of its own (never gathered with sends), so applying an entry looks
//! at its first record only.
//! Topic changes are proposed by the node that made them (a follower's proposal is
//! forwarded to the leader by raft-rs) and applied on every node when committed; consumer
//! offsets and delayed-delivery progress are a snapshot the leader proposes at most every
//! [`META_REPLICATION_INTERVAL_MS`] when they changed, applied by the followers.
//!
//! Runs on the shard's executor, like everything the shard owns.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rockshard_net::code::response;
use rockshard_net::rockshard::{ProgressView, StatusBody, StatusView, META_TOPIC, RAFT_MESSAGES};
use rockshard_net::stored::{self, RecordFields};
use rockshard_net::{ExtFields, RemotingCommand};
use rockshard_raft::{Hooks, Message, Role, Status, Transport};
use rockshard_storage::sync::Notify;
use rockshard_storage::TopicConfig;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::broker::offsets::OffsetTable;
use crate::broker::shard::{reply, Shard};
use crate::config::Replication;
use crate::limits::{
    LEADER_BALANCE_INTERVAL_MS, LEADER_BALANCE_LAG_MAX, LEADER_PLACEMENT_START_TRIES, META_REPLICATION_INTERVAL_MS,
    RAFT_LINK_START_GRACE_MS, RAFT_PEER_QUEUE_MAX_MSGS, RAFT_RECONNECT_BACKOFF_MS, REGISTER_TIMEOUT_MS,
};
use crate::remoting::client::Client;
use crate::remoting::server::{Connection, Signal};

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

// ---- transport ---------------------------------------------------------------------------

/// One peer's outgoing queue and the task that drains it.
struct Peer {
    id: u64,
    /// The node's name in `--peers`: what an operator knows it by.
    name: String,
    addr: SocketAddr,
    queue: RefCell<VecDeque<Message>>,
    wake: Notify,
    dropped: Cell<u64>,
}

/// The shard's links to the same shard on every other node of the group.
pub struct PeerLinks {
    peers: Vec<Rc<Peer>>,
}

impl PeerLinks {
    /// Starts one sender task per peer; they end when the shard shuts down.
    pub fn start(shard_id: usize, repl: &Replication, shutdown: Rc<Signal>) -> Rc<PeerLinks> {
        let mut peers = Vec::new();
        for id in repl.voters() {
            if id == repl.node_id {
                continue;
            }
            let Some(addr) = repl.peer_shard_addr(id, shard_id) else { continue };
            let name = (id as usize)
                .checked_sub(1)
                .and_then(|i| repl.peers.get(i))
                .map_or_else(|| format!("#{id}"), |(n, _)| n.clone());
            let peer = Rc::new(Peer {
                id,
                name,
                addr,
                queue: RefCell::new(VecDeque::new()),
                wake: Notify::default(),
                dropped: Cell::new(0),
            });
            glommio::spawn_local(run_peer(peer.clone(), shard_id, shutdown.clone())).detach();
            peers.push(peer);
        }
        Rc::new(PeerLinks { peers })
    }
}

impl Transport for PeerLinks {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let Some(peer) = self.peers.iter().find(|p| p.id == m.to) else {
                debug!(to = m.to, "raft message to an unknown node dropped");
                continue;
            };
            let mut q = peer.queue.borrow_mut();
            if q.len() >= RAFT_PEER_QUEUE_MAX_MSGS {
                peer.dropped.set(peer.dropped.get() + 1);
                continue;
            }
            q.push_back(m);
            drop(q);
            peer.wake.notify();
        }
    }
}

/// What a peer's sender task knows of its link, so that each change is logged once: a
/// WARN naming the peer when the link goes down, an INFO when it is up (again).
enum LinkState {
    /// Not up yet since the shard started (then): failures are quiet for
    /// [`RAFT_LINK_START_GRACE_MS`], as peers start at about the same time.
    Starting(Instant),
    Up,
    /// Down since then.
    Down(Instant),
}

/// The link to one peer as the log tells it.
struct LinkLog<'a> {
    peer: &'a Peer,
    shard_id: usize,
    state: LinkState,
}

impl LinkLog<'_> {
    fn up(&mut self) {
        let (shard, peer, addr) = (self.shard_id, &self.peer.name, self.peer.addr);
        match self.state {
            LinkState::Starting(_) => info!(shard, %peer, id = self.peer.id, %addr, "raft link up"),
            LinkState::Down(since) => {
                let down_ms = since.elapsed().as_millis() as u64;
                info!(shard, %peer, id = self.peer.id, %addr, down_ms, "raft link up again");
            }
            LinkState::Up => {}
        }
        self.state = LinkState::Up;
    }

    fn down(&mut self, why: &dyn std::fmt::Display) {
        let (shard, peer, addr) = (self.shard_id, &self.peer.name, self.peer.addr);
        match self.state {
            LinkState::Up => {
                warn!(shard, %peer, id = self.peer.id, %addr, error = %why, "raft link down");
                self.state = LinkState::Down(Instant::now());
            }
            LinkState::Starting(since) if since.elapsed() >= Duration::from_millis(RAFT_LINK_START_GRACE_MS) => {
                warn!(shard, %peer, id = self.peer.id, %addr, error = %why, "raft link down: not up since this node started");
                self.state = LinkState::Down(since);
            }
            LinkState::Starting(_) | LinkState::Down(_) => {
                debug!(shard, %peer, %addr, error = %why, "raft link not up; retrying");
            }
        }
    }
}

/// What ended a sender task's wait while its queue was empty.
enum Woke {
    Messages,
    Shutdown,
    /// The idle connection ended.
    Closed,
}

async fn run_peer(peer: Rc<Peer>, shard_id: usize, shutdown: Rc<Signal>) {
    let mut client: Option<Client> = None;
    let mut link = LinkLog { peer: &peer, shard_id, state: LinkState::Starting(Instant::now()) };
    while !shutdown.is_set() {
        if peer.queue.borrow().is_empty() {
            // Waits for messages, and meanwhile watches the connection: a peer that dies
            // while nothing goes to it (a follower's link to another follower) is noticed
            // when its connection ends, not at the next election.
            let idle = client.clone();
            let woke = futures_lite::future::or(
                async {
                    peer.wake.notified().await;
                    Woke::Messages
                },
                futures_lite::future::or(
                    async {
                        shutdown.wait().await;
                        Woke::Shutdown
                    },
                    async {
                        match idle {
                            Some(c) => c.closed().await,
                            None => std::future::pending::<()>().await,
                        }
                        Woke::Closed
                    },
                ),
            )
            .await;
            match woke {
                Woke::Shutdown => break,
                Woke::Messages => {}
                Woke::Closed => {
                    client = None;
                    link.down(&"connection closed");
                }
            }
            continue;
        }
        if client.as_ref().is_some_and(Client::is_closed) {
            client = None;
            link.down(&"connection closed");
        }
        let c = match client.clone() {
            Some(c) => c,
            None => match Client::connect(&peer.addr.to_string(), Duration::from_millis(REGISTER_TIMEOUT_MS)).await {
                Ok(c) => {
                    link.up();
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    link.down(&e);
                    // What waited is stale by the time the link is back: Raft resends
                    // whatever still matters, newer and smaller.
                    peer.queue.borrow_mut().clear();
                    glommio::timer::sleep(Duration::from_millis(RAFT_RECONNECT_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        let batch: Vec<Message> = peer.queue.borrow_mut().drain(..).collect();
        let mut body = Vec::new();
        rockshard_raft::wire::encode(&batch, &mut body);
        let cmd = RemotingCommand::new_request(RAFT_MESSAGES, ExtFields::new()).with_body(Bytes::from(body));
        if let Err(e) = c.oneway(cmd).await {
            link.down(&e);
            client = None;
        }
    }
    if let Some(c) = client {
        c.close().await;
    }
}

/// RAFT_MESSAGES and RAFT_STATUS.
pub async fn handle(shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let (Some(replica), Some(repl)) = (shard.replica.get(), shard.config.replication.as_ref()) else {
        return reply(&req, response::REQUEST_CODE_NOT_SUPPORTED, "this broker is not part of a replicated group");
    };
    match req.code {
        RAFT_MESSAGES => {
            match rockshard_raft::wire::decode(&req.body) {
                Ok(msgs) => {
                    for m in msgs {
                        replica.step(m);
                    }
                }
                Err(e) => warn!(shard = shard.id, error = %e, "undecodable raft messages dropped"),
            }
            None
        }
        _ => {
            let body = StatusBody {
                group: repl.group.clone(),
                broker_name: shard.broker_name.clone(),
                shard: shard.id,
                node: repl.node.clone(),
                node_id: repl.node_id,
                peers: repl.peers.iter().map(|(n, _)| n.clone()).collect(),
                status: status_view(&replica.status()),
            };
            let json = serde_json::to_vec(&body).expect("status serializes");
            Some(RemotingCommand::response_to(&req, response::SUCCESS, None).with_body(Bytes::from(json)))
        }
    }
}

// ---- hooks -------------------------------------------------------------------------------

/// What the replica tells the shard. Holds the shard weakly: the replica lives inside it.
pub struct ShardHooks {
    pub shard: RefCell<std::rc::Weak<Shard>>,
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
                for t in meta.topics_upsert {
                    if shard.store.topic(&t.name).as_ref() != Some(&t) {
                        if let Err(e) = shard.store.upsert_topic(t).await {
                            warn!(shard = shard.id, error = %e, "applying a replicated topic change failed");
                        }
                    }
                }
                for name in meta.topics_delete {
                    if let Err(e) = shard.store.remove_topic(&name).await {
                        warn!(shard = shard.id, error = %e, "applying a replicated topic deletion failed");
                    }
                    shard.offsets.remove_topic(&name);
                }
                shard.topics_changed();
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
            match <[u64; rockshard_storage::store::DELAY_LEVELS_MS.len()]>::try_from(delay) {
                Ok(levels) => {
                    shard.schedule.adopt(levels);
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        if let Err(e) = shard.schedule.persist(&shard.store).await {
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
                    Ok(table) => shard.offsets.replace(table),
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

// ---- proposing metadata ------------------------------------------------------------------

/// The stored-format record carrying `meta`, stamped now.
fn meta_record(shard: &Shard, meta: &MetaRecord) -> Bytes {
    let body = serde_json::to_vec(meta).expect("metadata serializes");
    let fields = RecordFields {
        topic: META_TOPIC.as_bytes(),
        queue_id: 0,
        flag: 0,
        sys_flag: 0,
        born_timestamp_ms: crate::broker::now_ms(),
        born_host: shard.store_host,
        store_timestamp_ms: crate::broker::now_ms(),
        store_host: shard.store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        properties: b"",
    };
    let mut out = Vec::with_capacity(body.len() + 128);
    stored::encode(&fields, 0, 0, &mut out).expect("a metadata record is always encodable");
    Bytes::from(out)
}

/// Replicates a topic change this shard just made (no-op without replication). A follower's
/// proposal is forwarded to the leader; everyone applies it when it commits.
pub fn topic_changed(shard: &Shard, upsert: Option<TopicConfig>, delete: Option<&str>) {
    let Some(replica) = shard.replica.get() else { return };
    let meta = MetaRecord {
        topics_upsert: upsert.into_iter().collect(),
        topics_delete: delete.map(str::to_string).into_iter().collect(),
        ..Default::default()
    };
    if let Err(e) = replica.propose_forwarded(meta_record(shard, &meta)) {
        warn!(shard = shard.id, error = %e, "a topic change could not be replicated now");
    }
}

/// The leader's offset snapshots: every interval, when the table changed since the last
/// one that committed.
pub fn start_meta_task(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let mut replicated_version = shard.offsets.version();
        let mut replicated_delay = shard.schedule.offsets();
        loop {
            let stop = shard.shutdown.sleep(Duration::from_millis(META_REPLICATION_INTERVAL_MS)).await;
            if stop {
                break;
            }
            let Some(replica) = shard.replica.get() else { break };
            let version = shard.offsets.version();
            let delay = shard.schedule.offsets();
            if !replica.is_leader() || (version == replicated_version && delay == replicated_delay) {
                continue;
            }
            let mut meta = MetaRecord::default();
            if version != replicated_version {
                let table = serde_json::from_slice(&shard.offsets.to_json()).expect("the offset table is JSON");
                meta.offsets = Some(table);
            }
            if delay != replicated_delay {
                meta.delay_offsets = Some(delay.to_vec());
            }
            match replica.propose_alone(meta_record(&shard, &meta)) {
                Ok(p) => match p.await {
                    Ok(_) => (replicated_version, replicated_delay) = (version, delay),
                    Err(e) => debug!(shard = shard.id, error = %e, "offset snapshot not committed; will retry"),
                },
                Err(e) => debug!(shard = shard.id, error = %e, "offset snapshot not proposed"),
            }
        }
    })
    .detach();
}

/// Spreads leadership: the shard's preferred node (see `Replication::preferred_leader`)
/// campaigns at start while the group has no leader, so that with several shards every
/// node leads some and takes writes; with `raft_balance_leaders`, a leader that is not
/// the preferred node hands over to it whenever that node is caught up.
pub fn start_leader_placement(shard: &Rc<Shard>) {
    let Some(repl) = shard.config.replication.clone() else { return };
    let preferred = repl.preferred_leader(shard.id);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let tick = Duration::from_millis(repl.tick_ms);
        // At start: a few tries, each a couple of ticks apart, while nobody leads.
        if preferred == repl.node_id {
            for _ in 0..LEADER_PLACEMENT_START_TRIES {
                let Some(replica) = shard.replica.get() else { return };
                if shard.shutdown.is_set() || replica.status().leader.is_some() {
                    break;
                }
                replica.campaign();
                glommio::timer::sleep(tick * 3).await;
            }
        }
        if !repl.balance_leaders {
            return;
        }
        while !shard.shutdown.is_set() {
            let stop = shard.shutdown.sleep(Duration::from_millis(LEADER_BALANCE_INTERVAL_MS)).await;
            if stop {
                break;
            }
            let Some(replica) = shard.replica.get() else { break };
            let st = replica.status();
            if st.role != Role::Leader || preferred == repl.node_id {
                continue;
            }
            let caught_up = st.progress.iter().any(|p| {
                p.id == preferred && p.state == "replicate" && p.matched + LEADER_BALANCE_LAG_MAX >= st.last_index
            });
            if caught_up {
                info!(shard = shard.id, to = preferred, "handing leadership to the preferred node");
                replica.transfer_leader(preferred);
            }
        }
    })
    .detach();
}

/// The follower a leader's status shows furthest along among those it is streaming to
/// (raft-rs "replicate" state): where to hand leadership or send a lagging reader.
pub fn furthest_follower(st: &Status) -> Option<u64> {
    st.progress.iter().filter(|p| p.state == "replicate").max_by_key(|p| p.matched).map(|p| p.id)
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
        if let (Some(replica), Some(repl)) = (shard.replica.get(), shard.config.replication.as_ref()) {
            let st = replica.status();
            if let (Role::Leader, Some(to)) = (st.role, furthest_follower(&st)) {
                info!(shard = shard.id, to, "stopping: handing leadership over first");
                replica.transfer_leader(to);
                let tick = Duration::from_millis(repl.tick_ms);
                for _ in 0..repl.election_ticks {
                    glommio::timer::sleep(tick).await;
                    if !replica.is_leader() {
                        break;
                    }
                }
                if replica.is_leader() {
                    warn!(shard = shard.id, to, "leadership not handed over in time; stopping as leader");
                }
            }
        }
        shutdown.trigger();
    })
    .detach();
}

/// The wire code for a replication failure: not the leader (or no longer) is a reason to
/// try another broker, which clients do for SERVICE_NOT_AVAILABLE; a commit that timed
/// out may still happen, which is what RocketMQ's FLUSH_SLAVE_TIMEOUT says.
pub fn error_code(e: &rockshard_raft::Error) -> i32 {
    match e {
        rockshard_raft::Error::Timeout { .. } => response::FLUSH_SLAVE_TIMEOUT,
        rockshard_raft::Error::Storage(se) => crate::broker::shard::storage_error_code(se),
        _ => response::SERVICE_NOT_AVAILABLE,
    }
}

/// Encodes records for a proposal: the stored format with this moment as STORETIMESTAMP;
/// the offsets are placeholders every node fills in identically when it persists.
pub fn encode_records(fields: &[RecordFields<'_>]) -> Result<Bytes, rockshard_net::Error> {
    let now = crate::broker::now_ms();
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
