//! Three replicas over real stores (`Store` on `SimDisk`, small segments so entries cross
//! segment ends and the store writes BLANK filler), on one glommio executor with a
//! reliable in-memory network and a manual clock.
//!
//! Checks: proposals resolve with this node's record places once applied; every node's
//! CommitLog is byte-identical over the committed range; readers see exactly the applied
//! records (the visible limit); a follower that was down catches up from the leader's
//! CommitLog (cache misses answered by reads) and converges byte for byte; a replica
//! reopened over its store reconciles and carries on.
//!
//! Thread: one glommio executor per test; loops are bounded in rounds.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::run;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use rockshard_net::stored::{self, RecordFields};
use rockshard_raft::{Clock, Hooks, Message, Replica, ReplicaConfig, Status, StoreData, Transport};
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{PhysicalOffset, QueueOffset, Store, StoreConfig};

const NODES: u64 = 3;
/// The store's smallest segment: a few dozen records roll over several.
const SEGMENT: u64 = 4096;
/// Rounds of "tick, deliver everything, let tasks run" before a wait gives up.
const ROUNDS_MAX: usize = 500;
const YIELDS_PER_ROUND: usize = 16;

type R = Replica<SimDisk, StoreData<SimDisk>>;

#[derive(Default)]
struct Net {
    queue: VecDeque<Message>,
}

struct NetTransport(Rc<RefCell<Net>>);

impl Transport for NetTransport {
    fn send(&self, msgs: Vec<Message>) {
        self.0.borrow_mut().queue.extend(msgs);
    }
}

#[derive(Default)]
struct Applied {
    entries: RefCell<Vec<(u64, Bytes)>>,
}

impl Hooks for Applied {
    fn applied(&self, index: u64, data: &[u8]) {
        self.entries.borrow_mut().push((index, Bytes::copy_from_slice(data)));
    }
    fn role_changed(&self, _status: &Status) {}
}

struct Node {
    disk: SimDisk,
    store: Option<Rc<Store<SimDisk>>>,
    replica: Option<R>,
    hooks: Rc<Applied>,
}

fn store_config() -> StoreConfig {
    let mut c = StoreConfig::new("/data");
    c.segment_size_bytes = SEGMENT;
    c.cq_file_entries = 64;
    c.flush_interval_ms = 3_600_000;
    c.checkpoint_interval_ms = 3_600_000;
    c.retention_check_interval_ms = 3_600_000;
    c.retention_hours = 0;
    c
}

fn replica_config(id: u64) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(id, (1..=NODES).collect(), PathBuf::from("/data/raft"));
    // A small cache: a follower that was down must be served from the CommitLog.
    c.entry_cache_bytes = 2048;
    c.max_entries_bytes_per_msg = 2048;
    c
}

/// One entry: `n` records of topic "T" (queues 0..3) with placeholder offsets.
fn entry_data(tag: &str, n: usize) -> Bytes {
    let mut out = Vec::new();
    for i in 0..n {
        let body = format!("{tag}-{i}-{}", "b".repeat(120 + i * 13));
        let fields = RecordFields {
            topic: b"T",
            queue_id: (i % 3) as i32,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "127.0.0.1:4000".parse().unwrap(),
            store_timestamp_ms: 1_700_000_000_100 + i as i64,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: body.as_bytes(),
            properties: b"TAGS\x01a\x02",
        };
        stored::encode(&fields, 0, 0, &mut out).unwrap();
    }
    Bytes::from(out)
}

struct Group {
    nodes: Vec<Node>,
    net: Rc<RefCell<Net>>,
}

impl Group {
    async fn new() -> Group {
        let mut g = Group { nodes: Vec::new(), net: Rc::new(RefCell::new(Net::default())) };
        for _ in 0..NODES {
            g.nodes.push(Node { disk: SimDisk::new(), store: None, replica: None, hooks: Rc::new(Applied::default()) });
        }
        for i in 0..NODES as usize {
            g.start(i).await;
        }
        g
    }

    async fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let store = Rc::new(Store::open_on(node.disk.clone(), store_config()).await.expect("store opens"));
        node.hooks = Rc::new(Applied::default());
        let r = Replica::open_with(
            replica_config(i as u64 + 1),
            StoreData::new(store.clone()),
            node.disk.clone(),
            Rc::new(NetTransport(self.net.clone())),
            node.hooks.clone(),
            Clock::Manual,
        )
        .await
        .expect("replica opens");
        node.store = Some(store);
        node.replica = Some(r);
    }

    /// Stops node `i` as a process crash would (the page cache, here SimDisk's live
    /// image, survives).
    fn kill(&mut self, i: usize) {
        if let Some(r) = self.nodes[i].replica.take() {
            r.abort();
        }
        self.nodes[i].store = None;
    }

    /// One round: optionally tick everyone, deliver every message (to live nodes).
    async fn round(&self, tick: bool) {
        if tick {
            for n in &self.nodes {
                if let Some(r) = &n.replica {
                    r.tick();
                }
            }
        }
        for _ in 0..YIELDS_PER_ROUND {
            let msgs: Vec<Message> = self.net.borrow_mut().queue.drain(..).collect();
            for m in msgs {
                if let Some(r) = self.nodes.get(m.to as usize - 1).and_then(|n| n.replica.as_ref()) {
                    r.step(m);
                }
            }
            futures_lite::future::yield_now().await;
        }
    }

    async fn leader(&self) -> usize {
        for round in 0..ROUNDS_MAX {
            if let Some(i) = self.nodes.iter().position(|n| n.replica.as_ref().is_some_and(|r| r.is_leader())) {
                return i;
            }
            self.round(round % 2 == 0).await;
        }
        panic!("no leader after {ROUNDS_MAX} rounds");
    }

    /// Rounds until every live node applied everything the leader has.
    async fn converge(&self) {
        for round in 0..ROUNDS_MAX {
            self.round(round % 4 == 0).await;
            let st: Vec<Status> = self.nodes.iter().filter_map(|n| n.replica.as_ref().map(|r| r.status())).collect();
            let last = st.iter().map(|s| s.last_index).max().unwrap_or(0);
            if st.iter().all(|s| s.applied == last && s.commit == last) {
                return;
            }
        }
        let st: Vec<Status> = self.nodes.iter().filter_map(|n| n.replica.as_ref().map(|r| r.status())).collect();
        panic!("no convergence: {st:#?}");
    }

    async fn commitlog(&self, i: usize) -> Vec<u8> {
        let store = self.nodes[i].store.as_ref().expect("up");
        let (min, _, written, _) = store.commitlog_positions();
        let mut out = Vec::new();
        let mut at = min.0;
        while at < written.0 {
            let end = written.0.min((at / SEGMENT + 1) * SEGMENT);
            out.extend_from_slice(&store.read_log(PhysicalOffset(at), (end - at) as usize).await.unwrap());
            at = end;
        }
        out
    }
}

#[test]
fn proposals_replicate_byte_identical_commitlogs() {
    run(|| async {
        let g = Group::new().await;
        let l = g.leader().await;
        let leader = g.nodes[l].replica.clone().unwrap();
        // A follower refuses: only the leader proposes with a waiter.
        let f = (l + 1) % NODES as usize;
        let err = g.nodes[f].replica.as_ref().unwrap().propose(entry_data("x", 1)).err().expect("follower refuses");
        assert!(matches!(err, rockshard_raft::Error::NotLeader { leader: Some(id) } if id == l as u64 + 1), "{err}");
        // Garbage never enters the log.
        assert!(leader.propose(Bytes::from_static(b"not a record")).is_err());

        let mut proposals = Vec::new();
        for k in 0..12 {
            proposals.push(leader.propose(entry_data(&format!("e{k}"), 1 + k % 4)).unwrap());
        }
        let results = futures_lite::future::zip(g.converge(), async {
            let mut out = Vec::new();
            for p in proposals {
                out.push(p.await);
            }
            out
        })
        .await
        .1;
        let store = g.nodes[l].store.clone().unwrap();
        for (k, r) in results.into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("proposal {k}: {e}"));
            assert_eq!(r.records.len(), 1 + k % 4);
            // The places are this node's, and each proposal gets exactly its own records,
            // in order, though the twelve arrived together and share an entry.
            for (i, placed) in r.records.iter().enumerate() {
                let rec = store.read_message(placed.physical_offset).await.unwrap();
                assert!(String::from_utf8_lossy(&rec).contains(&format!("e{k}-{i}-")), "proposal {k} record {i}");
            }
        }
        g.converge().await;
        let logs = [g.commitlog(0).await, g.commitlog(1).await, g.commitlog(2).await];
        assert!(logs[0].len() as u64 > SEGMENT, "entries crossed a segment end (a BLANK filler)");
        assert_eq!(logs[0], logs[1]);
        assert_eq!(logs[0], logs[2]);
        // Every node applied the same entries, and readers see them.
        let applied: Vec<Vec<(u64, Bytes)>> = g.nodes.iter().map(|n| n.hooks.entries.borrow().clone()).collect();
        let with_records = applied[0].iter().filter(|(_, d)| !d.is_empty()).count();
        assert!(with_records < 12, "proposals made together were not gathered into fewer entries: {with_records}");
        assert_eq!(applied[0], applied[1]);
        assert_eq!(applied[0], applied[2]);
        for n in &g.nodes {
            let s = n.store.as_ref().unwrap();
            assert_eq!(s.visible_limit(), Some(s.commitlog_positions().3));
            let total: u64 = (0..3).map(|q| s.queue_offsets("T", q).map_or(0, |(_, max)| max.0)).sum();
            assert_eq!(total, (0..12).map(|k| 1 + k % 4).sum::<usize>() as u64);
        }
        for n in &g.nodes {
            n.replica.as_ref().unwrap().abort();
        }
    });
}

#[test]
fn a_follower_that_was_down_catches_up_from_the_commitlog() {
    run(|| async {
        let mut g = Group::new().await;
        let l = g.leader().await;
        let down = (l + 1) % NODES as usize;
        g.kill(down);
        let leader = g.nodes[l].replica.clone().unwrap();
        let mut proposals = Vec::new();
        for k in 0..30 {
            proposals.push(leader.propose(entry_data(&format!("c{k}"), 2)).unwrap());
        }
        g.converge().await;
        for p in proposals {
            p.await.expect("a majority is up");
        }
        // Readers on the follower that stayed up see only applied records.
        let up = 3 - l - down;
        let s = g.nodes[up].store.clone().unwrap();
        let visible: u64 = (0..3).map(|q| s.queue_offsets("T", q).map_or(0, |(_, m)| m.0)).sum();
        assert_eq!(visible, 60);

        g.start(down).await;
        g.converge().await;
        assert!(leader.cache_misses() > 0, "the catch-up read entries back from the CommitLog");
        assert_eq!(g.commitlog(down).await, g.commitlog(l).await);
        let st = leader.status();
        assert_eq!(st.progress.len(), 2);
        assert!(st.progress.iter().all(|p| p.matched == st.last_index), "{st:?}");
        let s = g.nodes[down].store.clone().unwrap();
        let got = s.get_messages("T", 0, QueueOffset(0), 100, 1 << 20, None).await.unwrap();
        assert_eq!(got.messages.len(), 30);

        // The leader restarts (a process crash): it reconciles and the group goes on.
        g.kill(l);
        g.start(l).await;
        let l2 = g.leader().await;
        let p = g.nodes[l2].replica.as_ref().unwrap().propose(entry_data("after", 1)).unwrap();
        let (_, r) = futures_lite::future::zip(g.converge(), p).await;
        r.expect("the group takes proposals after the restart");
        g.converge().await;
        let logs = [g.commitlog(0).await, g.commitlog(1).await, g.commitlog(2).await];
        assert_eq!(logs[0], logs[1]);
        assert_eq!(logs[0], logs[2]);
        for n in &g.nodes {
            n.replica.as_ref().unwrap().abort();
        }
    });
}
