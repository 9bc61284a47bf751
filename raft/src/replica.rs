//! One shard's Raft replica on the shard's glommio executor: opens and reconciles the
//! raft files with the CommitLog, then runs [`Core`] with four tasks.
//!
//! - driver: takes Readies from raft-rs (after ticks, messages, proposals, persists,
//!   fetches), sends their messages at once, queues their persistence, applies their
//!   committed entries (visible limit first, then `Hooks::applied`, then the waiting
//!   proposals), reports role changes. Readies are taken when the driver runs, not per
//!   input, so everything that arrived meanwhile shares one Ready: appends that arrive
//!   while one is in flight are batched.
//! - persister: for each Ready in order: cuts a replaced suffix (after the persists
//!   before it have landed), then appends the entries to the data side and the index.
//!   It never waits for durability, so several Readies are on their way to disk at once.
//! - completer: waits, in Ready order, for each Ready's data to be durable, the index
//!   entries to be written and synced (one group commit for everything pending) and the
//!   hard state when term or vote changed; then tells raft-rs and sends the messages
//!   that waited for it (votes, append acknowledgements).
//! - fetcher: reads old entries back from the data side for lagging followers.
//! - ticker (unless the clock is manual): ticks every `tick_ms`.
//!
//! Invariants: a message that depends on a term, vote or entry leaves only after that
//! is durable; records become visible to readers only once committed and applied; a
//! replica that fails to persist stops (fails every proposal, takes no more input)
//! rather than acknowledge anything it may not have.
//!
//! Thread: the shard's executor; nothing is `Send`. No `RefCell` borrow is held across
//! an `.await` or across a call into hooks or the transport.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::Task;
use raft::eraftpb::{HardState as RaftHardState, Message};
use raft::RawNode;
use rockshard_local::Notify;
use rockshard_storage::{AppendResult, Disk, GlommioDisk};

use crate::core::{Core, Job, Status};
use crate::data::{LocalBoxFuture, LogData};
use crate::error::{Error, Result};
use crate::hard_state::{HardState, HardStateFile};
use crate::index::{IndexEntry, IndexFile, Span};
use crate::limits::*;
use crate::log::{LogMem, RaftLog};
use rockshard_local::oneshot;

/// File names inside `ReplicaConfig::dir`.
pub const INDEX_FILE: &str = "index";
pub const HARD_STATE_FILE: &str = "hardstate";

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This node's id: its 1-based position in the peer list.
    pub node_id: u64,
    /// Every voter's id, this node's included (1..=n).
    pub voters: Vec<u64>,
    /// The raft files of this shard (index, hard state).
    pub dir: PathBuf,
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// AppendEntries in flight per follower.
    pub max_inflight_msgs: usize,
    pub max_entries_bytes_per_msg: u64,
    /// A proposal not applied by then fails.
    pub propose_timeout_ms: u64,
    /// Recent entry data kept for followers.
    pub entry_cache_bytes: usize,
    /// raft-rs draws each election timeout from [e, 2e) with a random generator no one
    /// can seed. A simulation turns this off (timeouts of exactly e ticks) so that a
    /// seed replays exactly; it spreads elections by ticking nodes at different times.
    pub randomize_election_timeout: bool,
}

impl ReplicaConfig {
    /// The defaults of REPLICATION.md for node `node_id` of `voters`.
    pub fn new(node_id: u64, voters: Vec<u64>, dir: impl Into<PathBuf>) -> Self {
        ReplicaConfig {
            node_id,
            voters,
            dir: dir.into(),
            tick_ms: TICK_DEFAULT_MS,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            max_inflight_msgs: MAX_INFLIGHT_MSGS_DEFAULT,
            max_entries_bytes_per_msg: MAX_ENTRIES_BYTES_PER_MSG_DEFAULT,
            propose_timeout_ms: PROPOSE_TIMEOUT_DEFAULT_MS,
            entry_cache_bytes: ENTRY_CACHE_DEFAULT_BYTES,
            randomize_election_timeout: true,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |key, detail: String| Err(Error::Config { key, detail });
        if self.voters.is_empty() || self.voters.len() > VOTERS_MAX {
            return bad("voters", format!("1..={VOTERS_MAX} voters, got {}", self.voters.len()));
        }
        if self.voters.contains(&0) || !self.voters.contains(&self.node_id) {
            return bad(
                "node_id",
                format!("{} must be one of the voters {:?} (ids start at 1)", self.node_id, self.voters),
            );
        }
        if self.tick_ms == 0 || self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks", "tick_ms >= 1 and election_ticks > heartbeat_ticks >= 1".into());
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Sends raft messages to their `to` node. Never blocks; may drop (raft retries).
pub trait Transport {
    fn send(&self, msgs: Vec<Message>);
}

/// What the broker does with the replica's results.
pub trait Hooks {
    /// Committed entries applied in order (after the visible limit moved over them).
    fn applied(&self, index: u64, data: &[u8]);
    /// Leader, term or role changed.
    fn role_changed(&self, status: &Status);
}

/// Where ticks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// A timer task ticks every `tick_ms`.
    Timer,
    /// The owner calls [`Replica::tick`] (tests, the simulation).
    Manual,
}

/// A proposal's outcome: the places of its records on this node once applied here.
pub struct Proposal {
    rx: oneshot::Receiver<Result<AppendResult>>,
}

impl Future for Proposal {
    type Output = Result<AppendResult>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or_else(|| Err(Error::Stopped("replica dropped".into()))))
    }
}

/// A Ready whose entries are on their way to disk, or (number `None`) a refresh of the
/// hard state's commit index that no Ready asked for.
struct InFlight {
    number: Option<u64>,
    /// Highest index of its entries (0: none).
    last_index: u64,
    durable: Vec<LocalBoxFuture<Result<()>>>,
    /// Some entry holds `sync`-topic records: its index entry is fdatasynced too.
    sync: bool,
    hard_state: Option<RaftHardState>,
}

struct Inner<D: Disk, L: LogData> {
    cfg: ReplicaConfig,
    core: RefCell<Core>,
    log: Rc<RefCell<LogMem>>,
    data: L,
    index: IndexFile<D::File>,
    hard_state: RefCell<Option<HardStateFile<D::File>>>,
    /// The last hard state written: term/vote changes must be synced, commit may lag.
    written_hs: RefCell<HardState>,
    /// When the index file was last fdatasynced (async-topic entries sync it lazily).
    last_index_sync: Cell<Instant>,
    transport: Rc<dyn Transport>,
    hooks: Rc<dyn Hooks>,
    jobs: RefCell<VecDeque<Job>>,
    inflight: RefCell<VecDeque<InFlight>>,
    /// Readies handed to the completer, and completed.
    submitted: Cell<u64>,
    completed: Cell<u64>,
    driver_wake: Notify,
    persister_wake: Notify,
    completer_wake: Notify,
    fetcher_wake: Notify,
    drained: Notify,
    stopped: RefCell<Option<Error>>,
    tasks: RefCell<Vec<Task<()>>>,
}

/// One shard's replica. Cheap to clone (`Rc`).
/// The data side is the shard's store, or [`crate::MemLog`] in tests.
pub struct Replica<D: Disk = GlommioDisk, L: LogData = crate::store_data::StoreData<D>> {
    inner: Rc<Inner<D, L>>,
}

impl<D: Disk, L: LogData> Clone for Replica<D, L> {
    fn clone(&self) -> Self {
        Replica { inner: self.inner.clone() }
    }
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<D: Disk, L: LogData> Replica<D, L> {
    /// Opens the replica over `data` (the CommitLog side) and the raft files on `disk`:
    /// recovers the index and hard state, reconciles them with the data side, loads the
    /// unapplied entries, and starts the tasks. Must run on the shard's executor.
    pub async fn open_with(
        cfg: ReplicaConfig,
        data: L,
        disk: D,
        transport: Rc<dyn Transport>,
        hooks: Rc<dyn Hooks>,
        clock: Clock,
    ) -> Result<Self> {
        cfg.validate()?;
        disk.create_dir_all(&cfg.dir).await.map_err(Error::at("create dir", &cfg.dir, 0))?;
        let hs_path = cfg.dir.join(HARD_STATE_FILE);
        let had_state = disk.exists(&hs_path).await;
        let (hs_file, hs) = HardStateFile::open(&disk, &hs_path).await?;
        let (index, mut stored) = IndexFile::open(&disk, &cfg.dir.join(INDEX_FILE)).await?;
        let mut hs = hs.unwrap_or_else(|| HardState { voters: cfg.voters.clone(), ..Default::default() });
        let mut sorted = cfg.voters.clone();
        sorted.sort_unstable();
        let mut recorded = hs.voters.clone();
        recorded.sort_unstable();
        if sorted != recorded {
            return Err(Error::Config {
                key: "voters",
                detail: format!("the raft files were written for voters {:?}, configured {:?}", hs.voters, cfg.voters),
            });
        }

        // Reconciliation: an index entry whose bytes the data side does not have (lost
        // with power, cut by recovery) goes; data past the last indexed entry (appended
        // but never indexed) goes too.
        let data_end = data.end();
        let keep = stored.iter().take_while(|e| e.span.end <= data_end).count();
        if keep < stored.len() {
            tracing::warn!(dir = %cfg.dir.display(), dropped = stored.len() - keep, "raft: index entries past the CommitLog end dropped");
            index.truncate(keep as u64 + 1).await?;
            stored.truncate(keep);
        }
        let indexed_end = stored.last().map_or(0, |e| e.span.end);
        if data_end > indexed_end {
            if !had_state && stored.is_empty() {
                // Never replicated here, yet the CommitLog holds data: a standalone
                // store. Cutting it would destroy it; an operator must decide.
                return Err(Error::Config {
                    key: "dir",
                    detail: format!("the CommitLog holds {data_end} bytes written outside replication"),
                });
            }
            tracing::warn!(dir = %cfg.dir.display(), from = indexed_end, to = data_end, "raft: CommitLog bytes past the last index entry cut");
            data.truncate(indexed_end).await?;
        }

        let last = stored.len() as u64;
        // The commit index may be ahead of what survived (entries of async-flush topics
        // lost with power); raft-rs refuses a commit past the last index.
        hs.commit = hs.commit.min(last);
        let applied = hs.commit;
        let unapplied_spans: Vec<Span> = stored[applied as usize..].iter().map(|e| e.span).collect();
        let unapplied =
            if unapplied_spans.is_empty() { Vec::new() } else { data.read_entries(&unapplied_spans).await? };
        data.set_visible_limit(Some(applied.checked_sub(1).map_or(0, |i| stored[i as usize].span.end)));

        let raft_hs = RaftHardState { term: hs.term, vote: hs.vote, commit: hs.commit, ..Default::default() };
        let log =
            Rc::new(RefCell::new(LogMem::new(raft_hs, &cfg.voters, stored, applied, unapplied, cfg.entry_cache_bytes)));
        let (min_election_tick, max_election_tick) = if cfg.randomize_election_timeout {
            (0, 0) // raft-rs's defaults: [e, 2e)
        } else {
            (cfg.election_ticks, cfg.election_ticks + 1)
        };
        let raft_cfg = raft::Config {
            min_election_tick,
            max_election_tick,
            id: cfg.node_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied,
            max_size_per_msg: cfg.max_entries_bytes_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            // Off, although REPLICATION.md planned it on: raft-rs 0.7's batching appends
            // entries to an *empty* MsgAppend already queued for the same follower without
            // checking that they follow its index (util::is_continuous_ents returns true
            // for an empty message), so a commit-only append followed by a resend from a
            // lower next index leaves as one message whose entries do not start at
            // index + 1; the follower then "matches" past its log (raft-rs reads the term
            // past the last index as 0) and acknowledges entries it does not have. The
            // simulation (tests/sim.rs) found it. Batching still happens: every append of a
            // Ready leaves in one transport call, and a follower at its in-flight limit
            // gets everything pending in its next message.
            batch_append: false,
            max_uncommitted_size: UNCOMMITTED_MAX_BYTES,
            max_committed_size_per_ready: COMMITTED_PER_READY_MAX_BYTES,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let node = RawNode::new(&raft_cfg, RaftLog { mem: log.clone() }, &raft_logger())?;
        let core = Core::new(node, log.clone(), cfg.propose_timeout_ms, cfg.tick_ms);
        tracing::info!(dir = %cfg.dir.display(), id = cfg.node_id, term = hs.term, last, applied, "raft replica opened");

        let inner = Rc::new(Inner {
            cfg,
            core: RefCell::new(core),
            log,
            data,
            index,
            hard_state: RefCell::new(Some(hs_file)),
            written_hs: RefCell::new(hs),
            last_index_sync: Cell::new(Instant::now()),
            transport,
            hooks,
            jobs: RefCell::new(VecDeque::new()),
            inflight: RefCell::new(VecDeque::new()),
            submitted: Cell::new(0),
            completed: Cell::new(0),
            driver_wake: Notify::default(),
            persister_wake: Notify::default(),
            completer_wake: Notify::default(),
            fetcher_wake: Notify::default(),
            drained: Notify::default(),
            stopped: RefCell::new(None),
            tasks: RefCell::new(Vec::new()),
        });
        let mut tasks = vec![
            glommio::spawn_local(driver_loop(inner.clone())),
            glommio::spawn_local(persister_loop(inner.clone())),
            glommio::spawn_local(completer_loop(inner.clone())),
            glommio::spawn_local(fetcher_loop(inner.clone())),
        ];
        if clock == Clock::Timer {
            tasks.push(glommio::spawn_local(ticker_loop(inner.clone())));
        }
        *inner.tasks.borrow_mut() = tasks;
        inner.driver_wake.notify();
        Ok(Replica { inner })
    }

    fn check_running(&self) -> Result<()> {
        match &*self.inner.stopped.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Leader only. Resolves when the entry is applied on this node, with the records'
    /// places from this node's own persist; fails if leadership is lost, the entry is
    /// replaced, the timeout passes, or the replica stops.
    pub fn propose(&self, data: Bytes) -> Result<Proposal> {
        self.propose_with(data, Core::propose)
    }

    /// Like `propose`, but the data gets an entry of its own instead of sharing one with
    /// other proposals: for records the applier must find without scanning every entry.
    pub fn propose_alone(&self, data: Bytes) -> Result<Proposal> {
        self.propose_with(data, Core::propose_alone)
    }

    /// The checks and the wake-up both kinds of proposal share around `into`.
    fn propose_with(
        &self,
        data: Bytes,
        into: fn(&mut Core, Bytes) -> Result<oneshot::Receiver<Result<AppendResult>>>,
    ) -> Result<Proposal> {
        self.check_running()?;
        self.inner.data.validate(&data)?;
        let rx = into(&mut self.inner.core.borrow_mut(), data)?;
        self.inner.driver_wake.notify();
        Ok(Proposal { rx })
    }

    /// Like `propose`, also on followers (raft-rs forwards to the leader); nobody waits.
    /// The data always gets an entry of its own.
    pub fn propose_forwarded(&self, data: Bytes) -> Result<()> {
        self.check_running()?;
        self.inner.data.validate(&data)?;
        self.inner.core.borrow_mut().propose_forwarded(data)?;
        self.inner.driver_wake.notify();
        Ok(())
    }

    /// Campaigns for leadership now (see [`Core::campaign`]): a node started as its
    /// shard's preferred leader does this so that leaders spread over the nodes.
    pub fn campaign(&self) {
        if self.inner.stopped.borrow().is_some() {
            return;
        }
        self.inner.core.borrow_mut().campaign();
        self.inner.driver_wake.notify();
    }

    /// Hands leadership to node `to` if this node leads (preferred-leader balancing).
    pub fn transfer_leader(&self, to: u64) {
        if self.inner.stopped.borrow().is_some() {
            return;
        }
        self.inner.core.borrow_mut().transfer_leader(to);
        self.inner.driver_wake.notify();
    }

    /// A message from a peer.
    pub fn step(&self, msg: Message) {
        if self.inner.stopped.borrow().is_some() {
            return;
        }
        self.inner.core.borrow_mut().step(msg);
        self.inner.driver_wake.notify();
    }

    /// One clock tick (the ticker task calls it; with [`Clock::Manual`], the owner).
    pub fn tick(&self) {
        if self.inner.stopped.borrow().is_some() {
            return;
        }
        on_tick(&self.inner);
    }

    pub fn status(&self) -> Status {
        let stopped = self.inner.stopped.borrow().as_ref().map(|e| e.to_string());
        self.inner.core.borrow().status(stopped)
    }

    pub fn is_leader(&self) -> bool {
        self.inner.stopped.borrow().is_none() && self.inner.core.borrow().is_leader()
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.cfg
    }

    /// Cache misses answered with an async fetch so far (tests, metrics).
    pub fn cache_misses(&self) -> u64 {
        self.inner.log.borrow().cache_misses
    }

    /// Term and data of entry `index` as this node's Raft log has it now (cache, or read
    /// back from the data side); `None` past the last index or while the entry is
    /// neither cached nor persisted. For checks and debugging.
    pub async fn read_entry(&self, index: u64) -> Result<Option<(u64, Bytes)>> {
        let (term, cached, span) = {
            let log = self.inner.log.borrow();
            (log.term_of(index), log.data_of(index), log.span_of(index))
        };
        let Some(term) = term.filter(|_| index > 0) else { return Ok(None) };
        if let Some(d) = cached {
            return Ok(Some((term, d)));
        }
        let Some(span) = span else { return Ok(None) };
        let mut got = self.inner.data.read_entries(&[span]).await?;
        Ok(got.pop().map(|d| (term, d)))
    }

    /// Whether persistence work is queued or in flight (tests wait for quiet).
    pub fn busy(&self) -> bool {
        !self.inner.jobs.borrow().is_empty() || self.inner.submitted.get() != self.inner.completed.get()
    }

    /// Stops taking input, fails waiting proposals, lets the persists in flight finish
    /// (bounded: they wait on the data side, which has its own timeouts), writes the
    /// hard state with the latest commit, and stops the tasks.
    pub async fn close(&self) {
        if self.inner.stopped.borrow().is_some() {
            self.abort();
            return;
        }
        stop(&self.inner, Cause::Requested("closed"));
        while self.inner.completed.get() < self.inner.submitted.get() {
            self.inner.completer_wake.notify();
            self.inner.drained.notified().await;
        }
        let commit = self.inner.core.borrow().status(None).commit;
        let hs = HardState { commit, ..self.inner.written_hs.borrow().clone() };
        if let Err(e) = write_hard_state(&self.inner, hs).await {
            tracing::warn!(error = %e, "raft: hard state not written at close");
        }
        self.abort();
    }

    /// Stops every task at once without persisting anything more, as a crash would
    /// (the simulation's crash; also the end of `close`).
    pub fn abort(&self) {
        if self.inner.stopped.borrow().is_none() {
            stop(&self.inner, Cause::Requested("aborted"));
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.borrow_mut());
        drop(tasks);
        self.inner.jobs.borrow_mut().clear();
        self.inner.inflight.borrow_mut().clear();
    }
}

/// Why a replica stops.
#[derive(Debug)]
enum Cause {
    /// Its owner asked (`closed`, `aborted`): a normal stop.
    Requested(&'static str),
    /// A failure it cannot continue from (a persist that failed).
    Failed(Error),
}

/// Marks the replica stopped and fails every waiting proposal. Logged once, by the first
/// stop: a normal stop at INFO, a failure at ERROR, so alerts on ERROR fire for failures
/// and not for every clean shutdown.
fn stop<D: Disk, L: LogData>(inner: &Inner<D, L>, cause: Cause) {
    if inner.stopped.borrow().is_some() {
        return;
    }
    let dir = inner.cfg.dir.display();
    let err = match cause {
        Cause::Requested(how) => {
            tracing::info!(%dir, "raft replica {how}");
            Error::Stopped(how.into())
        }
        Cause::Failed(err) => {
            tracing::error!(%dir, error = %err, "raft replica stopped");
            err
        }
    };
    inner.core.borrow_mut().fail_all(&err);
    *inner.stopped.borrow_mut() = Some(err);
    for n in [&inner.driver_wake, &inner.persister_wake, &inner.completer_wake, &inner.fetcher_wake, &inner.drained] {
        n.notify();
    }
}

fn running<D: Disk, L: LogData>(inner: &Inner<D, L>) -> bool {
    inner.stopped.borrow().is_none()
}

async fn ticker_loop<D: Disk, L: LogData>(inner: Rc<Inner<D, L>>) {
    let period = Duration::from_millis(inner.cfg.tick_ms);
    while running(&inner) {
        glommio::timer::sleep(period).await;
        if !running(&inner) {
            break;
        }
        on_tick(&inner);
    }
}

/// A tick: raft-rs's clock, proposal deadlines, and the commit index refresh. The commit
/// in the hard-state file otherwise moves only with term or vote changes or every
/// COMMIT_PERSIST_EVERY_ENTRIES entries; a restart makes visible only what that file
/// says is committed, so a quiet replica writes the latest commit once per tick (when it
/// moved and nothing else is being persisted) and a restart hides at most a tick's worth
/// of records until the group commits them again.
fn on_tick<D: Disk, L: LogData>(inner: &Inner<D, L>) {
    let hs = {
        let mut core = inner.core.borrow_mut();
        core.tick();
        core.hard_state()
    };
    inner.driver_wake.notify();
    let idle = inner.jobs.borrow().is_empty() && inner.inflight.borrow().is_empty();
    if idle && hs.commit > inner.written_hs.borrow().commit {
        inner.inflight.borrow_mut().push_back(InFlight {
            number: None,
            last_index: 0,
            durable: Vec::new(),
            sync: false,
            hard_state: Some(hs),
        });
        inner.submitted.set(inner.submitted.get() + 1);
        inner.completer_wake.notify();
    }
}

async fn driver_loop<D: Disk, L: LogData>(inner: Rc<Inner<D, L>>) {
    loop {
        inner.driver_wake.notified().await;
        if !running(&inner) {
            return;
        }
        drive(&inner);
    }
}

/// Handles every Ready raft-rs has.
fn drive<D: Disk, L: LogData>(inner: &Inner<D, L>) {
    loop {
        if !running(inner) {
            return;
        }
        let Some(out) = inner.core.borrow_mut().ready() else { return };
        if !out.messages.is_empty() {
            inner.transport.send(out.messages);
        }
        if let Some(job) = out.job {
            inner.jobs.borrow_mut().push_back(job);
            inner.persister_wake.notify();
        }
        if !out.committed.is_empty() {
            apply(inner, &out.committed);
        }
        if let Some(status) = out.status_changed {
            inner.hooks.role_changed(&status);
        }
        if !inner.log.borrow().fetch_requests.is_empty() {
            inner.fetcher_wake.notify();
        }
    }
}

fn apply<D: Disk, L: LogData>(inner: &Inner<D, L>, committed: &[raft::eraftpb::Entry]) {
    let last = committed.last().expect("not empty").index;
    // Committed entries are persisted here (raft-rs hands over only those), so the data
    // side holds them.
    let Some(span) = inner.log.borrow().span_of(last) else {
        let err = Error::Stopped(format!("committed entry {last} is not on the data side").into());
        stop(inner, Cause::Failed(err));
        return;
    };
    inner.data.set_visible_limit(Some(span.end));
    for e in committed {
        inner.hooks.applied(e.index, &e.data);
    }
    inner.core.borrow_mut().applied_to(last);
}

async fn persister_loop<D: Disk, L: LogData>(inner: Rc<Inner<D, L>>) {
    loop {
        let job = inner.jobs.borrow_mut().pop_front();
        let Some(job) = job else {
            inner.persister_wake.notified().await;
            if !running(&inner) {
                return;
            }
            continue;
        };
        if let Err(e) = persist(&inner, job).await {
            stop(&inner, Cause::Failed(e));
            return;
        }
    }
}

/// Starts the persistence of one Ready: cut, append, hand to the completer.
async fn persist<D: Disk, L: LogData>(inner: &Inner<D, L>, job: Job) -> Result<()> {
    if let Some(from) = job.truncate_from {
        let cut = inner.log.borrow().stored(from);
        if let Some(first_replaced) = cut {
            // Earlier Readies' writes must land before the cut, or one could land after
            // it and bring replaced bytes back.
            while inner.completed.get() < inner.submitted.get() {
                inner.drained.notified().await;
                if !running(inner) {
                    return Ok(());
                }
            }
            tracing::info!(from, at = first_replaced.span.start, "raft: truncating a divergent suffix");
            inner.data.truncate(first_replaced.span.start).await?;
            inner.index.truncate(from).await?;
            inner.log.borrow_mut().truncate_stored(from);
        }
    }
    let mut durable = Vec::with_capacity(job.entries.len());
    let mut sync = false;
    let mut last_index = 0;
    for (index, term, bytes) in &job.entries {
        let (span, result) = if bytes.is_empty() {
            // An empty entry (a new leader's first) carries no records whose flush mode
            // could excuse it: it is the log's own structure, always synced.
            sync = true;
            let end = inner.data.end();
            (Span { start: end, end }, AppendResult { records: Vec::new(), store_timestamp_ms: 0 })
        } else {
            let appended = loop {
                match inner.data.append(bytes) {
                    Ok(a) => break a,
                    Err(e) if e.is_transient() => {
                        glommio::timer::sleep(Duration::from_millis(PERSIST_BUSY_RETRY_MS)).await;
                        if !running(inner) {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e),
                }
            };
            durable.push(appended.durable);
            sync |= appended.sync;
            (appended.span, appended.result)
        };
        let e = IndexEntry { term: *term, span };
        inner.log.borrow_mut().push_stored(*index, e);
        inner.index.append(*index, &e);
        inner.core.borrow_mut().note_appended(*index, *term, &result);
        last_index = *index;
    }
    inner.inflight.borrow_mut().push_back(InFlight {
        number: Some(job.number),
        last_index,
        durable,
        sync,
        hard_state: job.hard_state,
    });
    inner.submitted.set(inner.submitted.get() + 1);
    inner.completer_wake.notify();
    Ok(())
}

async fn completer_loop<D: Disk, L: LogData>(inner: Rc<Inner<D, L>>) {
    loop {
        let next = inner.inflight.borrow_mut().pop_front();
        let Some(job) = next else {
            inner.completer_wake.notified().await;
            if !running(&inner) && inner.inflight.borrow().is_empty() {
                inner.drained.notify();
                return;
            }
            continue;
        };
        if let Err(e) = complete(&inner, job).await {
            stop(&inner, Cause::Failed(e));
            inner.drained.notify();
            return;
        }
        inner.completed.set(inner.completed.get() + 1);
        inner.drained.notify();
    }
}

/// Waits until one Ready is durable, then lets raft-rs and the waiting messages go on.
async fn complete<D: Disk, L: LogData>(inner: &Inner<D, L>, job: InFlight) -> Result<()> {
    let data = async {
        for d in job.durable {
            d.await?;
        }
        Ok::<(), Error>(())
    };
    let index = async {
        if job.last_index > 0 {
            // Async-topic entries: the index reaches the page cache now and the disk at
            // least every INDEX_SYNC_INTERVAL_MS, as the store flushes their records.
            let due = inner.last_index_sync.get().elapsed() >= Duration::from_millis(INDEX_SYNC_INTERVAL_MS);
            let sync = job.sync || due;
            if sync {
                inner.last_index_sync.set(Instant::now());
            }
            inner.index.flush_to(job.last_index, sync).await?;
        }
        Ok::<(), Error>(())
    };
    let (d, i) = futures_lite::future::zip(data, index).await;
    d?;
    i?;
    if let Some(hs) = job.hard_state {
        let written = inner.written_hs.borrow().clone();
        let vote_changed = hs.term != written.term || hs.vote != written.vote;
        // A vote or term must be durable before the message that depends on it leaves;
        // the commit index only bounds re-application after a restart (and a refresh
        // asks for it explicitly).
        let refresh = job.number.is_none() && hs.commit > written.commit;
        if vote_changed || refresh || hs.commit >= written.commit + COMMIT_PERSIST_EVERY_ENTRIES {
            write_hard_state(
                inner,
                HardState { term: hs.term, vote: hs.vote, commit: hs.commit, voters: written.voters },
            )
            .await?;
        }
    }
    let Some(number) = job.number else { return Ok(()) };
    if !running(inner) {
        return Ok(());
    }
    let msgs = inner.core.borrow_mut().on_persisted(number);
    if !msgs.is_empty() {
        inner.transport.send(msgs);
    }
    inner.driver_wake.notify();
    Ok(())
}

async fn write_hard_state<D: Disk, L: LogData>(inner: &Inner<D, L>, hs: HardState) -> Result<()> {
    // Taken out for the write: no borrow across the await. Only the completer (and
    // close, after the completer drained) writes, so it is always there.
    let Some(mut file) = inner.hard_state.borrow_mut().take() else {
        return Err(Error::Stopped("hard state file busy".into()));
    };
    let r = file.write(&hs).await;
    *inner.hard_state.borrow_mut() = Some(file);
    r?;
    *inner.written_hs.borrow_mut() = hs;
    Ok(())
}

async fn fetcher_loop<D: Disk, L: LogData>(inner: Rc<Inner<D, L>>) {
    loop {
        let req = inner.log.borrow_mut().fetch_requests.pop_front();
        let Some(req) = req else {
            inner.fetcher_wake.notified().await;
            if !running(&inner) {
                return;
            }
            continue;
        };
        // The stored entries from `low` on, up to the size raft-rs asked for.
        let (first, spans) = {
            let log = inner.log.borrow();
            let budget = req.max_size.min(FETCH_BYTES_MAX);
            let mut spans = Vec::new();
            let mut bytes = 0u64;
            for i in req.low..req.high {
                match log.stored(i) {
                    Some(e) if log.term_of(i) == Some(e.term) => {
                        bytes += e.span.len();
                        spans.push((e.term, e.span));
                        if bytes >= budget {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            (req.low, spans)
        };
        if !spans.is_empty() {
            let only: Vec<Span> = spans.iter().map(|(_, s)| *s).collect();
            match inner.data.read_entries(&only).await {
                Ok(datas) => {
                    let mut log = inner.log.borrow_mut();
                    for (i, ((term, _), d)) in spans.iter().zip(datas).enumerate() {
                        log.insert_fetched(first + i as u64, *term, d);
                    }
                }
                // Not fatal: raft-rs asks again at the follower's next heartbeat answer.
                Err(e) => tracing::warn!(error = %e, low = req.low, "raft: reading old entries for a follower failed"),
            }
        }
        if !running(&inner) {
            return;
        }
        inner.core.borrow_mut().on_entries_fetched(req.context);
        inner.driver_wake.notify();
    }
}
