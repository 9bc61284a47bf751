//! Deterministic simulation of a replica group: 3 and 5 real [`Replica`]s (driver,
//! persister, completer, fetcher, index and hard-state files, proposal bookkeeping) on
//! one glommio executor, over a fake network (seeded: loss, reordering, duplication,
//! delay, partitions), a fake clock (explicit ticks per node) and fake disks (`SimDisk`
//! for the raft files, `MemLog` for the data side, whose durability the simulation
//! controls), with crashes that lose everything not durable and restarts.
//!
//! Checked after every step: at most one leader per term; a committed entry never
//! changes or disappears (every node's log up to its commit index equals the group's
//! committed log, term and data, also after a restart); every entry a node applies is
//! the committed one; every proposal answered "ok" is committed. At the end the network
//! heals and every node restarts: the group must elect a leader, take new proposals and
//! converge.
//!
//! Seeds: a fixed set by default; `RAFT_SIM_SEEDS=n` runs n more, `RAFT_SIM_SEED=s`
//! exactly one, `RAFT_SIM_STEPS=k` changes the steps per run. A failure names its seed.
//!
//! Thread: one glommio executor per run; every step ends by yielding a bounded number of
//! times so the replicas' tasks run (no real I/O, so glommio's order is deterministic).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use rockshard_raft::{Clock, Hooks, MemLog, Message, Proposal, Replica, ReplicaConfig, Role, Status, Transport};
use rockshard_storage::testing::SimDisk;

/// Steps of one run unless RAFT_SIM_STEPS says otherwise; with the seeds below the
/// whole test stays well under 30 s in a debug build.
const STEPS_DEFAULT: usize = 4000;
const SEEDS_DEFAULT: [u64; 10] = [1, 2, 3, 4, 5, 6, 0xdead_beef, 42, 7777, 31337];
/// Yields after each step: enough for a message to go through driver, persister and
/// completer and for the answers it causes to be queued.
const SETTLE_YIELDS: usize = 12;
/// Rounds of the final phase (heal, restart, converge) before giving up.
const FINAL_ROUNDS_MAX: usize = 400;
/// Proposals the healed group must acknowledge at the end.
const FINAL_PROPOSALS: usize = 3;

/// splitmix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default)]
struct Net {
    in_flight: Vec<Message>,
    /// Partition side of each node (same side: connected).
    side: BTreeMap<u64, u8>,
}

struct SimTransport {
    net: Rc<RefCell<Net>>,
}

impl Transport for SimTransport {
    fn send(&self, msgs: Vec<Message>) {
        self.net.borrow_mut().in_flight.extend(msgs);
    }
}

/// What every node reports, and the violations found while it reported.
#[derive(Default)]
struct Checker {
    /// The group's committed log: index -> data (and term once a node's log showed it).
    committed: BTreeMap<u64, Bytes>,
    committed_terms: BTreeMap<u64, u64>,
    leaders: BTreeMap<u64, u64>,
    acked: Vec<Bytes>,
    violations: Vec<String>,
}

impl Checker {
    fn committed_at(&mut self, node: u64, index: u64, term: Option<u64>, data: &Bytes) {
        match self.committed.get(&index) {
            Some(d) if d != data => self.violations.push(format!(
                "node {node}: entry {index} is {:?}, the committed one is {:?}",
                short(data),
                short(d)
            )),
            Some(_) => {}
            None => {
                self.committed.insert(index, data.clone());
            }
        }
        if let Some(t) = term {
            match self.committed_terms.get(&index) {
                Some(&ct) if ct != t => {
                    self.violations.push(format!("node {node}: entry {index} has term {t}, committed term {ct}"))
                }
                Some(_) => {}
                None => {
                    self.committed_terms.insert(index, t);
                }
            }
        }
    }

    fn leader(&mut self, node: u64, term: u64) {
        match self.leaders.get(&term) {
            Some(&l) if l != node => self.violations.push(format!("two leaders in term {term}: {l} and {node}")),
            Some(_) => {}
            None => {
                self.leaders.insert(term, node);
            }
        }
    }
}

fn short(d: &[u8]) -> String {
    String::from_utf8_lossy(&d[..d.len().min(24)]).into_owned()
}

struct SimHooks {
    node: u64,
    checker: Rc<RefCell<Checker>>,
    applied: RefCell<u64>,
}

impl Hooks for SimHooks {
    fn applied(&self, index: u64, data: &[u8]) {
        let mut last = self.applied.borrow_mut();
        let mut c = self.checker.borrow_mut();
        if index <= *last {
            c.violations.push(format!("node {}: applied {index} after {}", self.node, *last));
        }
        *last = index;
        c.committed_at(self.node, index, None, &Bytes::copy_from_slice(data));
    }

    fn role_changed(&self, status: &Status) {
        if status.role == Role::Leader {
            self.checker.borrow_mut().leader(self.node, status.term);
        }
    }
}

struct Node {
    id: u64,
    disk: SimDisk,
    data: MemLog,
    replica: Option<Replica<SimDisk, MemLog>>,
    /// Entries of this node's log known to match the committed log.
    checked_upto: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    nodes: Vec<Node>,
    net: Rc<RefCell<Net>>,
    checker: Rc<RefCell<Checker>>,
    proposals: u64,
    crashes: u64,
    /// Cache misses answered by reading the data side, summed over incarnations.
    cache_misses: u64,
    /// Outcomes of proposals: data, ok.
    outcomes: Rc<RefCell<Vec<(Bytes, bool)>>>,
}

fn config(id: u64, n: u64) -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(id, (1..=n).collect(), PathBuf::from(format!("/sim/n{id}")));
    cfg.election_ticks = 10;
    cfg.heartbeat_ticks = 2;
    cfg.max_inflight_msgs = 4;
    // Small messages and a small cache, so catch-up crosses several messages and reads
    // evicted entries back from the data side.
    cfg.max_entries_bytes_per_msg = 256;
    cfg.entry_cache_bytes = 512;
    cfg.propose_timeout_ms = 3_000;
    cfg.randomize_election_timeout = false;
    cfg
}

impl Sim {
    async fn new(seed: u64, n: u64) -> Sim {
        let net = Rc::new(RefCell::new(Net::default()));
        let checker = Rc::new(RefCell::new(Checker::default()));
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            nodes: Vec::new(),
            net,
            checker,
            proposals: 0,
            crashes: 0,
            cache_misses: 0,
            outcomes: Rc::new(RefCell::new(Vec::new())),
        };
        for id in 1..=n {
            sim.nodes.push(Node { id, disk: SimDisk::new(), data: MemLog::new(), replica: None, checked_upto: 0 });
        }
        for i in 0..n as usize {
            sim.start(i).await;
        }
        sim
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("raft simulation failed (seed {}, {} nodes): {what}", self.seed, self.nodes.len());
    }

    async fn start(&mut self, i: usize) {
        let n = self.nodes.len() as u64;
        let node = &mut self.nodes[i];
        let hooks = Rc::new(SimHooks { node: node.id, checker: self.checker.clone(), applied: RefCell::new(0) });
        let transport = Rc::new(SimTransport { net: self.net.clone() });
        let r = Replica::open_with(
            config(node.id, n),
            node.data.clone(),
            node.disk.clone(),
            transport,
            hooks,
            Clock::Manual,
        )
        .await;
        match r {
            Ok(r) => {
                node.replica = Some(r);
                node.checked_upto = 0;
            }
            Err(e) => self.fail(format!("node {} does not reopen: {e}", i + 1)),
        }
    }

    fn crash(&mut self, i: usize) {
        let torn = self.rng.next();
        let node = &mut self.nodes[i];
        if let Some(r) = node.replica.take() {
            self.cache_misses += r.cache_misses();
            self.crashes += 1;
            r.abort();
        }
        // Power loss: the data side keeps what was made durable, the raft files what
        // was synced, with unsynced sectors torn at random.
        node.data.lose_unsynced();
        node.disk.power_loss_torn(torn);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].replica.is_some()).collect()
    }

    fn leader(&self) -> Option<usize> {
        self.live().into_iter().find(|&i| self.nodes[i].replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    fn deliver(&mut self, k: usize, lossy: bool) {
        let msg = self.net.borrow_mut().in_flight.swap_remove(k);
        let (from, to) = (msg.from, msg.to);
        if lossy {
            if self.rng.chance(5) {
                return;
            }
            if self.rng.chance(3) {
                self.net.borrow_mut().in_flight.push(msg.clone());
            }
        }
        {
            let net = self.net.borrow();
            if net.side.get(&from) != net.side.get(&to) {
                return;
            }
        }
        if let Some(r) = self.nodes.get(to as usize - 1).and_then(|n| n.replica.as_ref()) {
            if trace() {
                let idx: Vec<(u64, u64)> = msg.entries.iter().map(|e| (e.index, e.term)).collect();
                eprintln!("  entries {idx:?}");
                eprintln!(
                    "  deliver {:?} {from}->{to} t{} idx{} lt{} c{} n{} rej{}",
                    msg.get_msg_type(),
                    msg.term,
                    msg.index,
                    msg.log_term,
                    msg.commit,
                    msg.entries.len(),
                    msg.reject
                );
            }
            r.step(msg);
        }
    }

    fn propose(&mut self, i: usize) {
        self.proposals += 1;
        let data = Bytes::from(format!("<s{}-p{}-n{}>", self.seed, self.proposals, i + 1));
        let Some(r) = self.nodes[i].replica.as_ref() else { return };
        if let Ok(p) = r.propose(data.clone()) {
            self.record_outcome(p, data);
        }
    }

    /// Notes how proposal `data` ends (acknowledged proposals are checked as committed).
    fn record_outcome(&self, p: Proposal, data: Bytes) {
        let outcomes = self.outcomes.clone();
        let checker = self.checker.clone();
        glommio::spawn_local(async move {
            let ok = p.await.is_ok();
            if ok {
                checker.borrow_mut().acked.push(data.clone());
            }
            outcomes.borrow_mut().push((data, ok));
        })
        .detach();
    }

    async fn settle(&self) {
        for _ in 0..SETTLE_YIELDS {
            futures_lite::future::yield_now().await;
        }
    }

    /// One random action.
    async fn step(&mut self) {
        let n = self.nodes.len();
        let roll = self.rng.below(100);
        if trace() {
            let st: Vec<String> = self
                .nodes
                .iter()
                .map(|n| match &n.replica {
                    Some(r) => {
                        let s = r.status();
                        format!("{}:{:?}/t{}/c{}/l{}", n.id, s.role, s.term, s.commit, s.last_index)
                    }
                    None => format!("{}:down", n.id),
                })
                .collect();
            eprintln!("roll {roll} net {} | {}", self.net.borrow().in_flight.len(), st.join(" "));
        }
        let in_flight = self.net.borrow().in_flight.len();
        match roll {
            0..=34 if in_flight > 0 => {
                let burst = 1 + self.rng.below(6) as usize;
                for _ in 0..burst {
                    let len = self.net.borrow().in_flight.len();
                    if len == 0 {
                        break;
                    }
                    let k = self.rng.below(len as u64) as usize;
                    self.deliver(k, true);
                }
            }
            0..=54 => {
                // Time passes, unevenly: each live node ticks with some chance.
                for i in self.live() {
                    if self.rng.chance(80) {
                        self.nodes[i].replica.as_ref().expect("live").tick();
                    }
                }
            }
            55..=69 => {
                let i = match self.leader() {
                    Some(l) if self.rng.chance(85) => l,
                    _ => self.rng.below(n as u64) as usize,
                };
                self.propose(i);
            }
            70..=86 => {
                let i = self.rng.below(n as u64) as usize;
                self.nodes[i].data.make_durable();
            }
            87..=88 => {
                let i = self.rng.below(n as u64) as usize;
                self.crash(i);
            }
            89..=92 => {
                let down: Vec<usize> = (0..n).filter(|&i| self.nodes[i].replica.is_none()).collect();
                if !down.is_empty() {
                    let i = down[self.rng.below(down.len() as u64) as usize];
                    self.start(i).await;
                }
            }
            93..=94 => {
                let mut net = self.net.borrow_mut();
                for id in 1..=n as u64 {
                    let side = (self.rng.below(2)) as u8;
                    net.side.insert(id, side);
                }
            }
            95..=97 => self.net.borrow_mut().side.clear(),
            _ => {
                // A message sits in the network a long time: move it to the front, where
                // it is delivered last among equals of a burst... or duplicated later.
                let len = self.net.borrow().in_flight.len();
                if len > 1 {
                    let k = self.rng.below(len as u64) as usize;
                    self.net.borrow_mut().in_flight.swap(0, k);
                }
            }
        }
        self.settle().await;
    }

    /// Every live node's log up to its commit index is the committed log; no violation
    /// was reported; every acknowledged proposal is committed.
    async fn check(&mut self) {
        for i in self.live() {
            let r = self.nodes[i].replica.clone().expect("live");
            let st = r.status();
            if st.role == Role::Leader {
                self.checker.borrow_mut().leader(st.id, st.term);
            }
            if let Some(why) = st.stopped {
                self.fail(format!("node {} stopped: {why}", i + 1));
            }
            // Up to what this node applied: a follower's commit index may already cover
            // entries it has not persisted yet, where its stored log can still hold an
            // older entry that the pending persist is about to replace.
            let from = self.nodes[i].checked_upto + 1;
            let mut upto = self.nodes[i].checked_upto;
            for index in from..=st.applied {
                match r.read_entry(index).await {
                    Ok(Some((term, data))) => {
                        self.checker.borrow_mut().committed_at(st.id, index, Some(term), &data);
                        upto = index;
                    }
                    // Committed by the leader's word but not yet persisted here.
                    Ok(None) => break,
                    Err(e) => self.fail(format!("node {}: reading entry {index}: {e}", i + 1)),
                }
            }
            self.nodes[i].checked_upto = upto;
        }
        let c = self.checker.borrow();
        if let Some(v) = c.violations.first() {
            self.fail(v);
        }
        // Proposals that arrived together share an entry: an acknowledged one must be a
        // part of a committed entry (the <...> delimiters make parts unambiguous).
        let contains = |entry: &Bytes, part: &Bytes| entry.windows(part.len()).any(|w| w == &part[..]);
        if let Some(lost) = c.acked.iter().find(|a| !c.committed.values().any(|e| contains(e, a))) {
            self.fail(format!("proposal {:?} answered ok but not committed", short(lost)));
        }
    }

    /// Heal, restart everything, deliver reliably until the group converges and takes
    /// new proposals.
    async fn converge(&mut self) {
        self.net.borrow_mut().side.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.start(i).await;
            }
        }
        let mut final_acked = 0;
        let mut proposed_at = None;
        for round in 0..FINAL_ROUNDS_MAX {
            for node in &self.nodes {
                node.data.set_auto_durable(true);
                if round % 3 == 0 {
                    node.replica.as_ref().expect("all up").tick();
                }
            }
            while !self.net.borrow().in_flight.is_empty() {
                self.deliver(0, false);
                self.settle().await;
            }
            self.settle().await;
            self.check().await;
            final_acked = self.outcomes.borrow().iter().filter(|(d, ok)| *ok && d.starts_with(b"<final")).count();
            if final_acked >= FINAL_PROPOSALS {
                let statuses: Vec<Status> =
                    self.nodes.iter().map(|n| n.replica.as_ref().expect("up").status()).collect();
                let last = statuses[0].last_index;
                if statuses.iter().all(|s| s.commit == last && s.last_index == last && s.applied == last) {
                    return;
                }
            } else if let Some(l) = self.leader() {
                if proposed_at.is_none_or(|at| round > at + 30) {
                    proposed_at = Some(round);
                    for k in 0..FINAL_PROPOSALS {
                        let data = Bytes::from(format!("<final-{round}-{k}>"));
                        let r = self.nodes[l].replica.clone().expect("leader");
                        if let Ok(p) = r.propose(data.clone()) {
                            self.record_outcome(p, data);
                        }
                    }
                }
            }
        }
        let statuses: Vec<String> =
            self.nodes.iter().map(|n| format!("{:?}", n.replica.as_ref().map(|r| r.status()))).collect();
        self.fail(format!("no convergence after healing ({final_acked} final proposals acked): {statuses:#?}"));
    }
}

/// What one run did, so a run that exercised nothing is visible.
struct RunStats {
    ok: usize,
    proposals: usize,
    crashes: u64,
    cache_misses: u64,
    committed: usize,
    /// The committed log itself, to compare two runs of one seed.
    log: Vec<(u64, Bytes)>,
}

async fn run_one(seed: u64, n: u64, steps: usize) -> RunStats {
    let mut sim = Sim::new(seed, n).await;
    for _ in 0..steps {
        sim.step().await;
        sim.check().await;
    }
    sim.converge().await;
    for node in &sim.nodes {
        if let Some(r) = &node.replica {
            sim.cache_misses += r.cache_misses();
            r.abort();
        }
    }
    let committed = sim.checker.borrow().committed.len();
    let log = sim.checker.borrow().committed.iter().map(|(i, d)| (*i, d.clone())).collect();
    let outcomes = sim.outcomes.borrow();
    RunStats {
        ok: outcomes.iter().filter(|(_, ok)| *ok).count(),
        proposals: outcomes.len(),
        crashes: sim.crashes,
        cache_misses: sim.cache_misses,
        committed,
        log,
    }
}

/// RAFT_SIM_TRACE=1 prints every step (use with RAFT_SIM_SEED).
fn trace() -> bool {
    std::env::var_os("RAFT_SIM_TRACE").is_some()
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("RAFT_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let more: u64 = std::env::var("RAFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut v = SEEDS_DEFAULT.to_vec();
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    v.extend((0..more).map(|k| base.wrapping_add(k.wrapping_mul(0x9e37_79b9))));
    v
}

fn steps() -> usize {
    std::env::var("RAFT_SIM_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(STEPS_DEFAULT)
}

fn run_cluster(n: u64) {
    let steps = steps();
    let (mut crashes, mut misses) = (0, 0);
    for seed in seeds() {
        let st = glommio::LocalExecutorBuilder::default()
            .spawn(move || run_one(seed, n, steps))
            .expect("executor")
            .join()
            .unwrap_or_else(|_| panic!("raft simulation panicked (seed {seed}, {n} nodes)"));
        eprintln!(
            "seed {seed}, {n} nodes: {} of {} proposals ok, {} entries committed, {} crashes, {} cache misses",
            st.ok, st.proposals, st.committed, st.crashes, st.cache_misses
        );
        assert!(st.ok >= FINAL_PROPOSALS, "seed {seed}: the healed group took no proposals");
        crashes += st.crashes;
        misses += st.cache_misses;
    }
    // The default seeds must reach the paths the simulation exists for.
    assert!(crashes > 0 && misses > 0, "{n} nodes: {crashes} crashes, {misses} cache misses over all seeds");
}

/// A seed replays exactly: same outcomes, same committed log. Without this a printed
/// seed would be of no use.
#[test]
fn a_seed_replays_exactly() {
    let once = || {
        glommio::LocalExecutorBuilder::default().spawn(|| run_one(99, 3, 600)).expect("executor").join().expect("run")
    };
    let (a, b) = (once(), once());
    assert_eq!((a.ok, a.proposals, a.crashes, a.cache_misses), (b.ok, b.proposals, b.crashes, b.cache_misses));
    assert_eq!(a.log, b.log);
    assert!(a.committed > 10, "the run did something");
}

#[test]
fn sim_three_nodes() {
    run_cluster(3);
}

#[test]
fn sim_five_nodes() {
    run_cluster(5);
}

/// A node of a 3-node group that hears nobody never becomes leader (the quorum is
/// counted over the configured voters), however long it waits.
#[test]
fn a_lone_node_never_leads() {
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let net = Rc::new(RefCell::new(Net::default()));
            let checker = Rc::new(RefCell::new(Checker::default()));
            let hooks = Rc::new(SimHooks { node: 1, checker, applied: RefCell::new(0) });
            let data = MemLog::new();
            data.set_auto_durable(true);
            let r = Replica::open_with(
                config(1, 3),
                data,
                SimDisk::new(),
                Rc::new(SimTransport { net: net.clone() }),
                hooks,
                Clock::Manual,
            )
            .await
            .unwrap();
            for _ in 0..100 {
                r.tick();
                for _ in 0..SETTLE_YIELDS {
                    futures_lite::future::yield_now().await;
                }
                assert!(!r.is_leader(), "{:?}", r.status());
            }
            assert!(!net.borrow().in_flight.is_empty(), "it asks for votes");
            r.abort();
        })
        .unwrap()
        .join()
        .unwrap();
}
